// The form for a notebook's workflow inputs, one control per declared type (the server's `input_fields`):
// numbers, a checkbox, dates, JSON for containers. It sends launch text, what `-p NAME=VALUE` takes, and
// only for the inputs the user changed; the server still parses and judges every value (a 400 names it).
import { el } from './dom';

export interface InputField {
  name: string;
  type: string;
  widget: 'int' | 'float' | 'bool' | 'str' | 'date' | 'datetime' | 'timedelta' | 'path' | 'enum' | 'json' | 'text';
  json_shape: 'array' | 'object' | null;
  optional: boolean;
  required: boolean;
  default_text: string;
}

export interface Control {
  field: InputField;
  input: HTMLInputElement | HTMLTextAreaElement;
  error: HTMLElement;
  row: HTMLElement;
}

const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const DURATION = /^\d+(\.\d+)?(ms|s|m|h|d)?$/;
const INT = /^[+-]?\d+$/;

/** Why `raw` is not a value of `field` ('' when it is, or when it is empty and may be). */
export function problem(field: InputField, raw: string, badInput = false): string {
  const text = raw.trim();
  if (badInput) {
    return field.widget === 'int' ? 'not a whole number' : 'not a number';
  }
  if (text === '') {
    return field.required && !field.optional ? 'required: give a value' : '';
  }
  switch (field.widget) {
    case 'int':
      return INT.test(text) ? '' : 'not a whole number';
    case 'float':
      return Number.isFinite(Number(text)) ? '' : 'not a number';
    case 'date':
      return DATE.test(text) && !Number.isNaN(Date.parse(text)) ? '' : 'use a date like 2024-01-02';
    case 'datetime':
      return /^\d{4}-\d{2}-\d{2}/.test(text) && !Number.isNaN(Date.parse(text)) ? '' : 'use a time like 2024-01-02T13:45:00';
    case 'timedelta':
      return DURATION.test(text) ? '' : 'use seconds or a duration like 90, 30s, 10m or 2h';
    case 'enum':
      return /^[A-Za-z_][A-Za-z0-9_]*$/.test(text) ? '' : 'use the name of one of its members, e.g. RED';
    case 'json': {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        return `not JSON: ${err instanceof Error ? err.message : String(err)}`;
      }
      if (field.json_shape === 'array' && !Array.isArray(value)) {
        return 'write a JSON list, e.g. [1, 2]';
      }
      if (field.json_shape === 'object' && (value === null || typeof value !== 'object' || Array.isArray(value))) {
        return 'write a JSON object, e.g. {"a": 1}';
      }
      return '';
    }
    default:
      return '';
  }
}

function control(field: InputField): HTMLInputElement | HTMLTextAreaElement {
  const attrs = { name: field.name, 'data-param': field.name, 'data-widget': field.widget, title: `${field.name}: ${field.type}` };
  const value = field.default_text;
  switch (field.widget) {
    case 'bool': {
      const box = el('input', { ...attrs, type: 'checkbox' });
      box.checked = value === 'true';
      return box;
    }
    case 'int':
    case 'float':
      return el('input', { ...attrs, type: 'number', step: field.widget === 'int' ? '1' : 'any', value });
    case 'date':
      return el('input', { ...attrs, type: 'date', value });
    case 'datetime':
      // a default with a UTC offset does not fit the browser's local-time control: text, checked the same way
      if (value === '' || LOCAL_TIME.test(value)) {
        return el('input', { ...attrs, type: 'datetime-local', step: '1', value });
      }
      return el('input', { ...attrs, type: 'text', value });
    case 'json': {
      const area = el('textarea', { ...attrs, rows: '1', spellcheck: 'false' });
      area.value = value;
      area.placeholder = field.json_shape === 'object' ? '{"a": 1}' : '[1, 2]';
      return area;
    }
    default: {
      const input = el('input', { ...attrs, type: 'text', value });
      if (field.widget === 'timedelta') {
        input.placeholder = '90, 30s, 10m, 2h';
      }
      return input;
    }
  }
}

function rawValue(c: Control): string {
  if (c.input instanceof HTMLInputElement && c.input.type === 'checkbox') {
    return c.input.checked ? 'true' : 'false';
  }
  return c.input.value;
}

/** A form over the workflow inputs; keeps what the user typed across graph refreshes. */
export class InputForm {
  readonly node: HTMLElement;
  private readonly controls = new Map<string, Control>();

  constructor(
    formName: string,
    private readonly exclude: ReadonlySet<string> = new Set()
  ) {
    this.node = el('div', { class: `flyte-inputs flyte-inputs-${formName}` });
  }

  /** Hand over the controls and what was typed in them (another notebook is shown); the form is empty after. */
  take(): Map<string, Control> {
    const taken = new Map(this.controls);
    this.controls.clear();
    this.node.replaceChildren();
    return taken;
  }

  /** Show controls taken earlier (the notebook they belong to is shown again), as they were. */
  put(controls: Map<string, Control>): void {
    this.controls.clear();
    for (const [name, c] of controls) {
      this.controls.set(name, c);
    }
    this.node.replaceChildren(...Array.from(controls.values(), c => c.row));
  }

  /** Draw the controls for `fields`; a control whose input keeps its name, type and default keeps its value. */
  update(fields: InputField[]): void {
    const kept = new Map(this.controls);
    this.controls.clear();
    const rows: HTMLElement[] = [];
    for (const field of fields) {
      if (this.exclude.has(field.name)) {
        continue;
      }
      const old = kept.get(field.name);
      const same = old && JSON.stringify(old.field) === JSON.stringify(field);
      const c = same && old ? old : this.build(field);
      this.controls.set(field.name, c);
      rows.push(c.row);
    }
    this.node.replaceChildren(...rows);
  }

  private build(field: InputField): Control {
    const input = control(field);
    const error = el('div', { class: 'flyte-input-error', 'data-error-for': field.name });
    const optional = field.required ? (field.optional ? ' (optional)' : ' (required)') : '';
    const label = el('label', { class: 'flyte-input' }, el('span', { class: 'flyte-input-name' }, `${field.name}: ${field.type}${optional}`), input);
    const row = el('div', { class: `flyte-input-row flyte-input-${field.widget}`, 'data-row': field.name }, label, error);
    const c: Control = { field, input, error, row };
    const check = () => this.check(c);
    input.addEventListener('input', check);
    input.addEventListener('change', check);
    return c;
  }

  /** Show (or clear) the control's inline error; true when its value is acceptable. */
  private check(c: Control): boolean {
    const bad = c.input instanceof HTMLInputElement && c.input.validity.badInput;
    this.mark(c, problem(c.field, rawValue(c), bad));
    return c.error.textContent === '';
  }

  private mark(c: Control, message: string): void {
    c.error.textContent = message;
    c.row.classList.toggle('flyte-invalid', message !== '');
  }

  /** The launch text of every changed input, or null (errors shown inline) when one is not acceptable. */
  values(): Record<string, string> | null {
    let ok = true;
    const params: Record<string, string> = {};
    for (const [name, c] of this.controls) {
      ok = this.check(c) && ok;
      const raw = rawValue(c);
      const text = c.field.widget === 'json' || c.field.widget === 'str' ? raw : raw.trim();
      if (text !== '' && (text !== c.field.default_text || c.field.required)) {
        params[name] = text;
      }
    }
    return ok ? params : null;
  }

  /** Put the server's refusal of one value (`-p NAME=VALUE: ...`) next to its control; false if none fits. */
  showServerError(message: string): boolean {
    const match = /^-p ([A-Za-z_][A-Za-z0-9_]*)\b/.exec(message);
    const c = match ? this.controls.get(match[1]) : undefined;
    if (!c) {
      return false;
    }
    this.mark(c, message);
    return true;
  }
}
