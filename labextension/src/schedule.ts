// The schedule form: what `flyte-lab schedule add` takes (cron or every, timezone, start, name, the
// workflow inputs as -p, catch-up, max active, overlap, notifications), with the next five fire times
// shown before saving. Its defaults, choices, bounds and hints are the server's schedule spec (`setSpec`);
// an input left empty is not sent, so the server's default applies. The server checks everything again
// and stores nothing if it refuses.
import { Debouncer } from '@lumino/polling';

import { Graph, ScheduleSpec, SpecField } from './api';
import { el } from './dom';
import { Control, InputField, InputForm } from './form';
import { SidebarModel } from './model';
import { PerNotebook } from './per_notebook';
import { messageOf, Section } from './section';

const DEBOUNCE_MS = 400;

/** What one notebook's schedule form holds: its inputs as entered, its notifications, its last message. */
interface FormState {
  values: Record<string, string>;
  catchup: boolean;
  notify: [string, string][];
  message: string;
  params: Map<string, Control>;
}

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
  private spec: ScheduleSpec | null = null;
  private readonly state = new PerNotebook<FormState>(() => this.save_state(), kept => this.load_state(kept));
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
    model.notebookChanged.connect((_, panel) => {
      this.state.follow(panel);
      if (!this.spec) {
        void this.loadSpec(); // the server did not answer before
      }
    }, this);
    // no graph (yet): the inputs are unknown, not none; the controls stay until the graph says
    model.graphChanged.connect((_, graph: Graph | null) => graph && this.setFields(graph.input_fields), this);
    this.state.follow(model.notebook);
    void this.loadSpec();
  }

  /** The fixed inputs by spec name (the parameters and notifications are kept apart). */
  private inputs(): Record<string, HTMLInputElement | HTMLSelectElement> {
    return {
      kind: this.kind, cron: this.cron, every: this.every, timezone: this.tz, start: this.start, name: this.name,
      max_catchup: this.maxCatchup, max_active: this.maxActive, overlap: this.overlap
    };
  }

  private save_state(): FormState {
    const values: Record<string, string> = {};
    for (const [name, input] of Object.entries(this.inputs())) {
      values[name] = input.value;
    }
    const notify = Array.from(this.notify.querySelectorAll('li'), li => [
      (li.querySelector('.flyte-notify-event') as HTMLSelectElement).value,
      (li.querySelector('.flyte-notify-url') as HTMLInputElement).value
    ] as [string, string]);
    return { values, catchup: this.catchup.checked, notify, message: this.message.textContent ?? '', params: this.params.take() };
  }

  /** Show a notebook's kept form, or a fresh one (the spec's defaults) for a notebook not seen yet. */
  private load_state(kept: FormState | undefined): void {
    this.notify.replaceChildren();
    this.preview.replaceChildren();
    if (this.spec) {
      this.applyDefaults(this.spec);
    }
    if (kept) {
      for (const [name, input] of Object.entries(this.inputs())) {
        input.value = kept.values[name] ?? input.value;
      }
      this.catchup.checked = kept.catchup;
      for (const [event, url] of kept.notify) {
        this.addNotify(event, url);
      }
    }
    this.message.textContent = kept?.message ?? '';
    this.maxCatchup.disabled = !this.catchup.checked;
    this.showKind();
    this.params.put(kept?.params ?? new Map());
    if (this.when()) {
      void this.previewer.invoke().catch(() => undefined);
    }
  }

  private async loadSpec(): Promise<void> {
    try {
      const config = await this.model.config();
      if (!this.spec) {
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

  /** Draw the inputs as the server's schedule spec describes them: choices, bounds, hints; then its defaults. */
  private setSpec(spec: ScheduleSpec): void {
    this.spec = spec;
    const field = (name: string): SpecField => spec.properties[name] ?? {};
    const texts: [string, HTMLInputElement][] = [
      ['cron', this.cron], ['every', this.every], ['timezone', this.tz], ['start', this.start], ['name', this.name],
      ['max_catchup', this.maxCatchup], ['max_active', this.maxActive]
    ];
    for (const [name, input] of texts) {
      const { description, examples, minimum, maximum } = field(name);
      input.title = description ?? '';
      input.placeholder = examples?.join(', ') ?? description ?? '';
      if (minimum !== undefined) {
        input.min = String(minimum);
      }
      if (maximum !== undefined) {
        input.max = String(maximum);
      }
    }
    this.catchup.title = field('catchup').description ?? '';
    const overlap = field('overlap');
    this.overlap.replaceChildren(...(overlap.enum ?? []).map(v => el('option', { value: v }, v)));
    this.overlap.title = overlap.description ?? '';
    this.applyDefaults(spec);
    this.events = field('notify').events ?? [];
    for (const name of field('params').reserved ?? []) {
      this.reserved.add(name);
    }
    this.params.update(this.fields);
  }

  /** The spec's defaults in every fixed input (a notebook whose form was not filled in yet). */
  private applyDefaults(spec: ScheduleSpec): void {
    const field = (name: string): SpecField => spec.properties[name] ?? {};
    for (const [name, input] of Object.entries(this.inputs())) {
      if (name !== 'kind') {
        const value = field(name).default;
        input.value = value === null || value === undefined ? '' : String(value);
      }
    }
    this.kind.value = 'cron';
    this.catchup.checked = field('catchup').default === true;
    this.maxCatchup.disabled = !this.catchup.checked;
    this.showKind();
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

  private addNotify(eventName?: string, urlText = ''): void {
    const event = el('select', { class: 'flyte-notify-event' }, ...this.events.map(e => el('option', { value: e }, e)));
    if (eventName !== undefined) {
      event.value = eventName;
    }
    const url = el('input', { class: 'flyte-notify-url', placeholder: 'https://hooks.example.com/... or mailto:team@example.com' });
    url.value = urlText;
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

  /** Why a whole-number input is not one ('' when both are): a browser's number field reads letters as empty,
   * which would send nothing and let the server's default apply unseen. */
  private badNumber(): string {
    for (const [label, input] of [['at most (max catchup)', this.maxCatchup], ['runs at once (max active)', this.maxActive]] as const) {
      const text = input.value.trim();
      const bad = input.validity.badInput || (text !== '' && !/^[+-]?\d+$/.test(text));
      input.classList.toggle('flyte-invalid', bad);
      if (bad && !input.disabled) {
        return `${label}: not a whole number`;
      }
    }
    return '';
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
    const badNumber = this.badNumber();
    if (badNumber) {
      this.message.textContent = badNumber;
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
