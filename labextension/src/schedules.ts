// The followed notebook's schedules: timing, next fire time (or why the scheduler skips one), policy, with
// Pause/Resume and Remove. Asked every five seconds (a schedule added by the CLI shows up, the next fire time
// moves on) and after each change made here.
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { Schedule } from './api';
import { el } from './dom';
import { SidebarModel } from './model';
import { Section } from './section';

const POLL_MS = 5000;

function policy(s: Schedule): string {
  const params = Object.entries(s.params ?? {}).map(([k, v]) => `${k}=${v}`).join(' ');
  return [s.catchup ? `catch-up (at most ${s.max_catchup})` : 'no catch-up',
    `max active ${s.max_active}, overlap ${s.overlap}`, params ? `-p ${params}` : '',
    ...(s.notify ?? []).map(n => `notify ${n}`)].filter(Boolean).join('; ');
}

function quoted(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'"'"'`)}'`;
}

/** The `flyte-lab schedule add` command that makes the schedule again (run from the Jupyter root). */
export function addCommand(s: Schedule): string {
  const args = ['flyte-lab', 'schedule', 'add', s.path, ...(s.cron ? ['--cron', s.cron] : ['--every', `${s.every_s}s`]),
    '--timezone', s.timezone, '--name', s.name,
    ...Object.entries(s.params ?? {}).flatMap(([k, v]) => ['-p', `${k}=${v}`]),
    ...(s.catchup ? ['--catchup', '--max-catchup', String(s.max_catchup)] : []),
    '--max-active', String(s.max_active), '--overlap', s.overlap,
    ...(s.notify ?? []).flatMap(n => ['--notify', n])];
  return args.map(quoted).join(' ');
}

export class SchedulesSection extends Section {
  private readonly list = el('ul', { class: 'flyte-schedule-list' });

  constructor(private readonly model: SidebarModel) {
    super('schedules');
    this.content.append(el('h3', {}, 'Schedules'), this.list);
    this.poll('schedules', POLL_MS, () => this.refresh());
    model.notebookChanged.connect(() => {
      this.list.replaceChildren();
      this.clearError();
      this.refreshPolls();
    }, this);
    model.schedulesChanged.connect(() => this.refreshPolls(), this);
  }

  private async refresh(): Promise<void> {
    const path = this.model.path;
    if (!path) {
      return;
    }
    const schedules = await this.model.client.schedules(path);
    if (this.model.path === path) {
      this.list.replaceChildren(...schedules.map(s => this.item(s)));
    }
  }

  /** Remove asks first, and shows how to add the schedule back. */
  private async confirmRemove(s: Schedule): Promise<void> {
    const body = el('div', { class: 'flyte-remove-schedule' },
      el('p', {}, `Remove schedule ${s.name}? It stops firing; its runs stay. To add it again later, run:`),
      el('pre', { class: 'flyte-readd-command' }, addCommand(s)),
      ...(s.notify?.length ? [el('p', {}, 'Notification addresses are shown with their secret parts hidden: give those again.')] : []));
    const answer = await showDialog({
      title: 'Remove schedule',
      body: new Widget({ node: body }),
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Remove' })]
    });
    if (answer.button.accept) {
      await this.act(this.model.client.removeSchedule(s.name));
    }
  }

  private item(s: Schedule): HTMLElement {
    const client = this.model.client;
    const toggle = el('button', { class: 'jp-Button flyte-schedule-toggle' }, s.paused ? 'Resume' : 'Pause');
    toggle.onclick = () => void this.act(client.pauseSchedule(s.name, !s.paused));
    const remove = el('button', { class: 'jp-Button flyte-schedule-remove' }, 'Remove');
    remove.onclick = () => void this.confirmRemove(s);
    const state = s.invalid ? `invalid: ${s.invalid}` : s.paused ? 'paused' : `next ${s.next_fire_time}`;
    return el('li', { class: 'flyte-schedule', 'data-schedule': s.name },
      `${s.name}: ${s.cron ?? `every ${s.every_s}s`} (${s.timezone}) ${state} `,
      toggle, ' ', remove, el('div', { class: 'flyte-schedule-policy' }, policy(s)));
  }
}
