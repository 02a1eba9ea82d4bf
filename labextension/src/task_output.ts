// A task's live output in the recent-runs list: its row is a collapsed "output" toggle (opened by itself the first
// time the task is seen running) showing the newest lines its attempts printed, read with `since` from
// `GET runs/ID/tasks/TASK/log` about every second while it is open and the task may still print. The lines are
// the task's: set as text (`textContent`), never as HTML.
import { FlyteLabClient, LogLine, RunSummary } from './api';
import { el } from './dom';

export const TAIL_LINES = 20; // the newest lines shown
const RUNNING = 'running'; // the task state whose output opens by itself

/** Whose line it is when it is not the task's first attempt's own: `fit[3]` (map-over element 3), `fit#2`
 * (a second attempt), as `store/task_output.attempt_label` names them. */
function source(line: LogLine): string {
  const element = line.element === null ? '' : `[${line.element}]`;
  return line.task + element + (line.attempt > 1 ? `#${line.attempt}` : '');
}

class TaskTail {
  readonly node = el('details', { class: 'flyte-run-task' });
  private readonly summary = el('summary', {});
  private readonly note = el('div', { class: 'flyte-output-note' });
  private readonly pre = el('pre', { class: 'flyte-output' });
  private lines: { stream: string; text: string }[] = [];
  private since = 0;
  private read = 0; // lines read in all
  private dropped = false; // the store no longer keeps some attempt's first lines
  private finished = false; // the task ended and a read after that brought nothing: no more will come
  private opened = false; // opened by itself once: after that the user's choice stands
  private reading: Promise<void> | null = null;
  private atBottom = true; // where the user left the tail's scroll (the list is redrawn every second)
  private scrollTop = 0;

  constructor(readonly runId: string, readonly task: string, onOpen: () => void) {
    this.node.dataset.task = task;
    this.node.append(this.summary, this.note, this.pre);
    this.node.addEventListener('toggle', () => {
      if (this.node.open) {
        onOpen();
      }
    });
    this.pre.addEventListener('scroll', () => {
      this.atBottom = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 2;
      this.scrollTop = this.pre.scrollTop;
    });
    this.draw();
  }

  /** The task's state as the runs list read it. */
  update(status: string, terminal: Set<string>): void {
    if (!terminal.has(status)) {
      this.finished = false; // running again (a resumed run): its new attempt's lines come after `since`
    }
    if (status === RUNNING && !this.opened) {
      this.opened = true;
      this.node.open = true;
    }
    this.summary.replaceChildren(
      el('span', { class: 'flyte-run-task-name' }, this.task), ' ',
      el('span', { class: `flyte-run-task-status flyte-task-${status}` }, status));
  }

  get wanted(): boolean {
    return this.node.open && !this.finished;
  }

  /** Read what the task printed since the last read (one read at a time). */
  refresh(client: FlyteLabClient, terminal: Set<string>): Promise<void> {
    if (!this.reading) {
      this.reading = this.readOn(client, terminal).finally(() => {
        this.reading = null;
      });
    }
    return this.reading;
  }

  private async readOn(client: FlyteLabClient, terminal: Set<string>): Promise<void> {
    for (;;) {
      const page = await client.taskLog(this.runId, this.task, this.since);
      this.since = page.next;
      this.read += page.lines.length;
      this.dropped ||= page.dropped.length > 0;
      const shown = page.lines.slice(-TAIL_LINES).map(line => {
        const who = source(line);
        return { stream: line.stream, text: who === this.task ? line.text : `${who} | ${line.text}` };
      });
      this.lines = [...this.lines, ...shown].slice(-TAIL_LINES);
      // the state was read before the lines: once it says ended, a read bringing nothing was the last
      if (!terminal.has(page.status) || page.lines.length === 0) {
        this.finished = terminal.has(page.status);
        break;
      }
    }
    this.draw();
  }

  private draw(): void {
    this.note.textContent = this.lines.length === 0
      ? (this.finished ? 'it printed nothing' : 'waiting for its first line')
      : this.read > TAIL_LINES || this.dropped ? `the last ${TAIL_LINES} lines (the executed notebook has them all)` : '';
    this.note.hidden = !this.note.textContent;
    this.pre.hidden = this.lines.length === 0;
    this.pre.replaceChildren(...this.lines.map(({ stream, text }) => {
      const line = el('span', { class: `flyte-output-${stream}` });
      line.textContent = `${text}\n`;
      return line;
    }));
    this.keepScroll();
  }

  /** Back where the user left it (at the newest line unless scrolled up), also after the list was redrawn. */
  keepScroll(): void {
    this.pre.scrollTop = this.atBottom ? this.pre.scrollHeight : this.scrollTop;
  }
}

/** The output tails of the runs shown: a live run's tasks each have one; a run that ended while shown keeps them. */
export class TaskTails {
  private readonly tails = new Map<string, TaskTail>(); // by run id and task
  private readonly watched = new Set<string>(); // runs seen live here
  private terminal = new Set<string>(); // the task states that no longer change (the server's word)

  constructor(private readonly client: FlyteLabClient, private readonly onOpen: () => void) {}

  /** The task rows of `run` (none for an ended run never seen live here), their states updated. */
  rows(run: RunSummary, live: boolean, terminal: Set<string>): HTMLElement[] {
    this.terminal = terminal;
    if (live) {
      this.watched.add(run.run_id);
    }
    if (!this.watched.has(run.run_id)) {
      return [];
    }
    return Object.entries(run.tasks).map(([task, summary]) => {
      const key = JSON.stringify([run.run_id, task]);
      let tail = this.tails.get(key);
      if (!tail) {
        tail = new TaskTail(run.run_id, task, this.onOpen);
        this.tails.set(key, tail);
      }
      tail.update(summary.status, terminal);
      return tail.node;
    });
  }

  /** Forget the runs no longer shown (all of them: another notebook). */
  keep(runIds: Set<string> = new Set()): void {
    for (const [key, tail] of this.tails) {
      if (!runIds.has(tail.runId)) {
        this.tails.delete(key);
      }
    }
    for (const runId of this.watched) {
      if (!runIds.has(runId)) {
        this.watched.delete(runId);
      }
    }
  }

  /** After the list was redrawn: each tail scrolled as the user left it. */
  keepScroll(): void {
    for (const tail of this.tails.values()) {
      tail.keepScroll();
    }
  }

  /** Read every open tail whose task may still print; the first failure is thrown once all are read. */
  async refresh(): Promise<void> {
    const wanted = [...this.tails.values()].filter(tail => tail.wanted);
    const results = await Promise.allSettled(wanted.map(tail => tail.refresh(this.client, this.terminal)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      throw failed.reason;
    }
  }
}
