// The schedule form: what `flyte-lab schedule add` takes (cron or every, timezone, start, name, the
// workflow inputs as -p, catch-up, max active, overlap, notifications), with the next five fire times
// shown before saving. Its defaults, choices, bounds and hints are the server's schedule spec (`setSpec`);
// an input left empty is not sent, so the server's default applies. The server checks everything again
// and stores nothing if it refuses.
import { Debouncer } from '@lumino/polling';

import { Graph, ScheduleSpec, SpecField } from './api';
import { el } from './dom';
import { InputField, InputForm } from './form';
import { SidebarModel } from './model';
import { messageOf, Section } from './section';

const DEBOUNCE_MS = 400;

export class ScheduleForm extends Section {
  private readonly form = el('div', { class: 'flyte-schedule-form' });
  private readonly reserved = new Set<string>(); // inputs the scheduler sets (the spec's `params.reserved`)
  private readonly params = new InputForm('schedule', this.reserved);
  private readonly kind = el('select', { class: 'flyte-schedule-kind' },
    el('option', { value: 'cron' }, 'cron'), el('option', { value: 'every' }, 'every'));
  private readonly cron = el('input', { class: 'flyte-cron' });
  private readonly every = el('input', { class: 'flyte-every' });
  private readonly tz = el('input', { class: 'flyte-timezone' });
  private readonly start = el('input', { class: 'flyte-start', type: 'datetime-local', step: '1' });
  private readonly name = el('input', { class: 'flyte-schedule-name' });
  private readonly catchup = el('input', { class: 'flyte-catchup', type: 'checkbox' });
  private readonly maxCatchup = el('input', { class: 'flyte-max-catchup', type: 'number', step: '1' });
  private readonly maxActive = el('input', { class: 'flyte-max-active', type: 'number', step: '1' });
  private readonly overlap = el('select', { class: 'flyte-overlap' });
  private readonly notify = el('ul', { class: 'flyte-notify-list' });
  private readonly preview = el('ul', { class: 'flyte-fire-times' });
  private readonly message = el('div', { class: 'flyte-schedule-message' });
  private events: string[] = []; // what a notification may be for (the spec's `notify.events`)
  private fields: InputField[] = [];
  private hasSpec = false;
  private readonly previewer = new Debouncer(() => this.refreshPreview(), DEBOUNCE_MS);

  constructor(private readonly model: SidebarModel) {
    super('schedule');
    const refresh = () => void this.previewer.invoke().catch(() => undefined);
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
    this.form.append(
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
    this.content.append(el('h3', {}, 'Schedule'), this.form);
    this.showKind();
    model.notebookChanged.connect(this.follow, this);
    model.graphChanged.connect((_, graph: Graph | null) => this.setFields(graph?.input_fields ?? []), this);
    void this.loadSpec();
  }

  private follow(): void {
    this.params.clear();
    if (!this.hasSpec) {
      void this.loadSpec(); // the server did not answer before
    }
  }

  private async loadSpec(): Promise<void> {
    try {
      const config = await this.model.config();
      if (!this.hasSpec) {
        this.hasSpec = true;
        this.setSpec(config.schedule_spec);
      }
      this.clearError();
    } catch (err) {
      this.showError(err);
    }
  }

  /** The workflow inputs of the followed notebook changed. */
  private setFields(fields: InputField[]): void {
    this.fields = fields;
    this.params.update(fields);
  }

  /** Draw the inputs as the server's schedule spec describes them: defaults, choices, bounds, hints. */
  private setSpec(spec: ScheduleSpec): void {
    const field = (name: string): SpecField => spec.properties[name] ?? {};
    const texts: [string, HTMLInputElement][] = [
      ['cron', this.cron], ['every', this.every], ['timezone', this.tz], ['start', this.start], ['name', this.name],
      ['max_catchup', this.maxCatchup], ['max_active', this.maxActive]
    ];
    for (const [name, input] of texts) {
      const { default: value, description, examples, minimum, maximum } = field(name);
      input.value = value === null || value === undefined ? '' : String(value);
      input.title = description ?? '';
      input.placeholder = examples?.join(', ') ?? description ?? '';
      if (minimum !== undefined) {
        input.min = String(minimum);
      }
      if (maximum !== undefined) {
        input.max = String(maximum);
      }
    }
    this.catchup.checked = field('catchup').default === true;
    this.catchup.title = field('catchup').description ?? '';
    this.maxCatchup.disabled = !this.catchup.checked;
    const overlap = field('overlap');
    this.overlap.replaceChildren(...(overlap.enum ?? []).map(v => el('option', { value: v }, v)));
    this.overlap.value = String(overlap.default ?? '');
    this.overlap.title = overlap.description ?? '';
    this.events = field('notify').events ?? [];
    for (const name of field('params').reserved ?? []) {
      this.reserved.add(name);
    }
    this.params.update(this.fields);
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

  private async refreshPreview(): Promise<void> {
    const when = this.when();
    if (!when) {
      this.preview.replaceChildren();
      return;
    }
    try {
      const p = await this.model.client.previewSchedule({ ...when, ...this.given({ timezone: this.tz, start: this.start }) });
      this.preview.replaceChildren(...p.fire_times.map(f => el('li', { class: 'flyte-fire-time' }, f)));
      this.message.textContent = '';
    } catch (err) {
      this.preview.replaceChildren();
      this.message.textContent = messageOf(err);
    }
  }

  private addNotify(): void {
    const event = el('select', { class: 'flyte-notify-event' }, ...this.events.map(e => el('option', { value: e }, e)));
    const url = el('input', { class: 'flyte-notify-url', placeholder: 'https://hooks.example.com/... or mailto:team@example.com' });
    const remove = el('button', { class: 'jp-Button flyte-notify-remove', type: 'button' }, 'x');
    const row = el('li', { class: 'flyte-notify' }, event, url, remove);
    remove.onclick = () => row.remove();
    this.notify.append(row);
  }

  /** The inputs the user did not leave empty, by field name: the server fills in the others. */
  private given(inputs: Record<string, HTMLInputElement | HTMLSelectElement>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, input] of Object.entries(inputs)) {
      const text = input.value.trim();
      if (text !== '') {
        out[name] = text;
      }
    }
    return out;
  }

  private async save(): Promise<void> {
    const when = this.when();
    const params = this.params.values();
    if (!when) {
      const input = this.kind.value === 'cron' ? this.cron : this.every;
      this.message.textContent = `give ${this.kind.value === 'cron' ? 'a cron expression' : 'an interval'}, e.g. ${input.placeholder}`;
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
    const body: Record<string, unknown> = {
      path: this.model.path, ...when, params, catchup: this.catchup.checked, notify,
      ...this.given({ timezone: this.tz, start: this.start, name: this.name, overlap: this.overlap })
    };
    for (const [name, text] of Object.entries(this.given({ max_catchup: this.maxCatchup, max_active: this.maxActive }))) {
      body[name] = Number(text);
    }
    try {
      const s = await this.model.client.addSchedule(body);
      this.message.textContent = `schedule ${s.name} saved`;
      this.model.schedulesChanged.emit();
    } catch (err) {
      if (!(err instanceof Error && this.params.showServerError(err.message))) {
        this.message.textContent = messageOf(err);
      } else {
        this.message.textContent = 'the server refused an input (marked above)';
      }
    }
  }

  dispose(): void {
    this.previewer.dispose();
    super.dispose();
  }
}
