// A part of the sidebar: a widget with one job, its content, and one error line that each failure replaces and
// each success clears (a server that stays down shows one line, not one more per refresh). A section that
// follows the store refreshes by a lumino `Poll`: backing off while the server fails, standing by while the
// page or the sidebar is hidden, disposed with the section.
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { el } from './dom';

const MAX_POLL_MS = 30_000; // the longest wait between two tries while the server fails (backoff)

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class Section extends Widget {
  protected readonly content = el('div', { class: 'flyte-section-content' });
  private readonly error = el('div', { class: 'flyte-error flyte-section-error' });
  private readonly polls: Poll[] = [];

  constructor(name: string) {
    super({ node: el('section', { class: `flyte-section flyte-section-${name}` }) });
    this.error.hidden = true;
    this.node.append(this.content, this.error);
  }

  /** Show `err` as this section's one error line, in place of the one before. */
  protected showError(err: unknown): void {
    this.error.textContent = messageOf(err);
    this.error.hidden = false;
  }

  protected clearError(): void {
    this.error.textContent = '';
    this.error.hidden = true;
  }

  /** A poll running `refresh` every `interval` ms (longer while it fails); its outcome is the error line. */
  protected poll(name: string, interval: number, refresh: () => Promise<void>): Poll {
    const poll = new Poll({
      name: `flyte-lab:${name}`,
      factory: async () => {
        try {
          await refresh();
        } catch (err) {
          this.showError(err);
          throw err; // the poll backs off
        }
        this.clearError();
      },
      frequency: { interval, backoff: true, max: Math.max(interval, MAX_POLL_MS) },
      // a hidden page (the poll's own rule) or a collapsed sidebar asks nothing
      standby: () => (this.isVisible ? 'when-hidden' : true)
    });
    this.polls.push(poll);
    return poll;
  }

  /** Refresh now: shown again, the notebook changed, or an action here changed what the server holds. */
  protected refreshPolls(): void {
    for (const poll of this.polls) {
      void poll.refresh();
    }
  }

  /** A change asked of the server from this section: its refusal on the error line, else the section refreshed. */
  protected async act(request: Promise<unknown>): Promise<void> {
    try {
      await request;
    } catch (err) {
      this.showError(err);
      return;
    }
    this.refreshPolls();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.refreshPolls();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.refreshPolls();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    for (const poll of this.polls) {
      poll.dispose();
    }
    super.dispose();
  }
}
