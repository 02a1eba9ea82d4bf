// The followed notebook's schedules: timing, next fire time (or why the scheduler skips one), policy, with
// Pause/Resume and Remove. Asked every five seconds (a schedule added by the CLI shows up, the next fire time
// moves on) and after each change made here.
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

  private item(s: Schedule): HTMLElement {
    const client = this.model.client;
    const toggle = el('button', { class: 'jp-Button flyte-schedule-toggle' }, s.paused ? 'Resume' : 'Pause');
    toggle.onclick = () => void this.act(client.pauseSchedule(s.name, !s.paused));
    const remove = el('button', { class: 'jp-Button flyte-schedule-remove' }, 'Remove');
    remove.onclick = () => void this.act(client.removeSchedule(s.name));
    const state = s.invalid ? `invalid: ${s.invalid}` : s.paused ? 'paused' : `next ${s.next_fire_time}`;
    return el('li', { class: 'flyte-schedule', 'data-schedule': s.name },
      `${s.name}: ${s.cron ?? `every ${s.every_s}s`} (${s.timezone}) ${state} `,
      toggle, ' ', remove, el('div', { class: 'flyte-schedule-policy' }, policy(s)));
  }
}
