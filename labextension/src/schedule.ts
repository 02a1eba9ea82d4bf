// The schedule form: what `flyte-lab schedule add` takes (cron or every, timezone, start, name, the
// workflow inputs as -p, catch-up, max active, overlap, notifications), with the next five fire times
// shown before saving. The server checks everything again and stores nothing if it refuses.
import { api, post, Schedule } from './api';
import { el } from './dom';
import { InputField, InputForm } from './form';

const DEBOUNCE_MS = 400;
const EVENTS = ['failed', 'succeeded', 'timed_out'];
const SCHEDULED_TIME = 'scheduled_time'; // the scheduler passes each fire time

function say(node: HTMLElement, err: unknown): void {
  node.textContent = err instanceof Error ? err.message : String(err);
}

export class ScheduleForm {
  readonly node = el('div', { class: 'flyte-schedule-form' });
  readonly params = new InputForm('schedule', new Set([SCHEDULED_TIME]));
  private readonly kind = el('select', { class: 'flyte-schedule-kind' },
    el('option', { value: 'cron' }, 'cron'), el('option', { value: 'every' }, 'every'));
  private readonly cron = el('input', { class: 'flyte-cron', placeholder: '0 7 * * *' });
  private readonly every = el('input', { class: 'flyte-every', placeholder: '15m, 2h, 1d' });
  private readonly tz = el('input', { class: 'flyte-timezone', value: 'UTC' });
  private readonly start = el('input', { class: 'flyte-start', type: 'datetime-local', step: '1' });
  private readonly name = el('input', { class: 'flyte-schedule-name', placeholder: 'name (default: the notebook)' });
  private readonly catchup = el('input', { class: 'flyte-catchup', type: 'checkbox' });
  private readonly maxCatchup = el('input', { class: 'flyte-max-catchup', type: 'number', min: '1', step: '1', value: '50' });
  private readonly maxActive = el('input', { class: 'flyte-max-active', type: 'number', min: '1', step: '1', value: '1' });
  private readonly overlap = el('select', { class: 'flyte-overlap' },
    el('option', { value: 'skip' }, 'skip'), el('option', { value: 'queue' }, 'queue'));
  private readonly notify = el('ul', { class: 'flyte-notify-list' });
  private readonly preview = el('ul', { class: 'flyte-fire-times' });
  private readonly message = el('div', { class: 'flyte-schedule-message' });
  private timer = 0;

  constructor(
    private readonly path: () => string,
    private readonly saved: () => Promise<void>
  ) {
    const refresh = () => this.refreshPreview();
    for (const input of [this.cron, this.every, this.tz, this.start]) {
      input.oninput = refresh;
    }
    this.kind.onchange = () => {
      this.showKind();
      refresh();
    };
    this.catchup.onchange = () => (this.maxCatchup.disabled = !this.catchup.checked);
    this.maxCatchup.disabled = true;
    const addNotify = el('button', { class: 'jp-Button flyte-notify-add', type: 'button' }, 'Add notification');
    addNotify.onclick = () => this.addNotify();
    const save = el('button', { class: 'jp-Button flyte-schedule-save' }, 'Save schedule');
    save.onclick = () => void this.save();
    this.node.append(
      el('label', {}, 'fire ', this.kind, this.cron, this.every),
      el('label', {}, 'timezone', this.tz),
      el('label', {}, 'start (optional)', this.start),
      el('label', {}, 'name', this.name),
      el('div', { class: 'flyte-subhead' }, 'inputs'), this.params.node,
      el('label', {}, this.catchup, ' run missed fire times (catch-up), at most ', this.maxCatchup),
      el('label', {}, 'runs at once (max active)', this.maxActive),
      el('label', {}, 'a fire time while one runs: ', this.overlap),
      el('div', { class: 'flyte-subhead' }, 'notifications'), this.notify, addNotify,
      el('div', {}, 'next fire times:'), this.preview, save, this.message);
    this.showKind();
  }

  /** The workflow inputs of the active notebook changed. */
  setFields(fields: InputField[]): void {
    this.params.update(fields);
  }

  private showKind(): void {
    const cron = this.kind.value === 'cron';
    this.cron.hidden = !cron;
    this.every.hidden = cron;
  }

  private when(): Record<string, string> | null {
    const text = (this.kind.value === 'cron' ? this.cron : this.every).value.trim();
    return text ? { [this.kind.value]: text } : null;
  }

  private refreshPreview(): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(async () => {
      const when = this.when();
      if (!when) {
        this.preview.replaceChildren();
        return;
      }
      const query: Record<string, string> = { ...when, timezone: this.tz.value.trim() || 'UTC' };
      if (this.start.value) {
        query.start = this.start.value;
      }
      try {
        const p = await api<{ fire_times: string[] }>('schedules/preview', {}, query);
        this.preview.replaceChildren(...p.fire_times.map(f => el('li', { class: 'flyte-fire-time' }, f)));
        this.message.textContent = '';
      } catch (err) {
        this.preview.replaceChildren();
        say(this.message, err);
      }
    }, DEBOUNCE_MS);
  }

  private addNotify(): void {
    const event = el('select', { class: 'flyte-notify-event' }, ...EVENTS.map(e => el('option', { value: e }, e)));
    const url = el('input', { class: 'flyte-notify-url', placeholder: 'https://hooks.example.com/... or mailto:team@example.com' });
    const remove = el('button', { class: 'jp-Button flyte-notify-remove', type: 'button' }, 'x');
    const row = el('li', { class: 'flyte-notify' }, event, url, remove);
    remove.onclick = () => row.remove();
    this.notify.append(row);
  }

  private async save(): Promise<void> {
    const when = this.when();
    const params = this.params.values();
    if (!when) {
      this.message.textContent = `give a ${this.kind.value === 'cron' ? 'cron expression, e.g. 0 7 * * *' : 'interval, e.g. 15m'}`;
      return;
    }
    if (params === null) {
      this.message.textContent = 'fix the inputs marked above';
      return;
    }
    const notify = Array.from(this.notify.querySelectorAll('li')).map(li => {
      const event = (li.querySelector('.flyte-notify-event') as HTMLSelectElement).value;
      return `${event}=${(li.querySelector('.flyte-notify-url') as HTMLInputElement).value.trim()}`;
    });
    const body = {
      path: this.path(), ...when, timezone: this.tz.value.trim() || 'UTC', name: this.name.value.trim() || null,
      start: this.start.value || null, params, catchup: this.catchup.checked,
      max_catchup: Number(this.maxCatchup.value || 50), max_active: Number(this.maxActive.value || 1),
      overlap: this.overlap.value, notify
    };
    try {
      const s = await post<Schedule>('schedules', body);
      this.message.textContent = `schedule ${s.name} saved`;
      await this.saved();
    } catch (err) {
      if (!(err instanceof Error && this.params.showServerError(err.message))) {
        say(this.message, err);
      } else {
        this.message.textContent = 'the server refused an input (marked above)';
      }
    }
  }
}
