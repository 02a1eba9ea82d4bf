// The followed notebook's tasks (signatures, resources) and diagnostics, from the editor's current content:
// asked again (debounced) as the user types and when the notebook is saved. A task or diagnostic selects its cell.
import { NotebookPanel } from '@jupyterlab/notebook';
import { Debouncer } from '@lumino/polling';

import { Diagnostic, Graph, Selection } from './api';
import { el } from './dom';
import { SidebarModel } from './model';
import { Section } from './section';

const DEBOUNCE_MS = 400;

function signature(inputs: Record<string, string>, outputs: Record<string, string>): string {
  const ins = Object.entries(inputs).map(([n, t]) => `${n}: ${t}`).join(', ');
  const outs = Object.entries(outputs).map(([n, t]) => `${n}: ${t}`).join(', ');
  return `(${ins}) -> ${outs || 'None'}`;
}

function resources(options: Record<string, unknown>): string {
  return Object.entries(options)
    .filter(([, v]) => v !== null && v !== false && v !== undefined && !(Array.isArray(v) && v.length === 0))
    .map(([k, v]) => {
      const flag = `--${k.replace(/_/g, '-')}`; // the graph JSON's keys are Python names; headers spell options so
      return v === true ? flag : `${flag} ${Array.isArray(v) ? v.join(',') : String(v)}`;
    })
    .join(' ');
}

// what an empty notebook's sidebar offers: the smallest notebook flyte_lab runs
const STARTER = [
  '%load_ext flyte_lab',
  '%%flyte_task greet(name: str) -> greeting: str\ngreeting = f"hello {name}"'
];

function starterHint(): HTMLElement {
  return el('div', { class: 'flyte-empty-hint' },
    el('p', {}, 'No tasks yet. A task is a code cell that starts with %%flyte_task, its typed inputs and outputs. ' +
      'A first notebook: one cell loading flyte_lab, one task cell, and a workflow input set in a plain cell ' +
      '(name = "world") or given when you run:'),
    ...STARTER.map(source => el('pre', { class: 'flyte-starter-cell' }, source)));
}

export class GraphSection extends Section {
  private readonly tasks = el('section', { class: 'flyte-section-tasks' });
  private readonly diagnostics = el('section', { class: 'flyte-section-diagnostics' });
  private readonly debouncer = new Debouncer(() => this.refresh(), DEBOUNCE_MS);

  constructor(private readonly model: SidebarModel) {
    super('graph');
    this.content.append(this.tasks, this.diagnostics);
    model.notebookChanged.connect(this.follow, this);
    model.edited.connect(this.changed, this);
    model.saved.connect(this.changed, this);
    model.diagnosticsShown.connect((_, diagnostics) => this.renderDiagnostics(diagnostics), this);
    this.render(null);
  }

  private follow(_: SidebarModel, panel: NotebookPanel | null): void {
    this.clearError();
    this.render(null);
    if (panel) {
      void panel.context.ready.then(() => this.changed(this.model, panel));
    }
  }

  private changed(_: SidebarModel, panel: NotebookPanel): void {
    if (panel === this.model.notebook) { // a notebook in the background (its kernel, a save): not the one shown
      void this.debouncer.invoke().catch(() => undefined);
    }
  }

  private async refresh(): Promise<void> {
    const panel = this.model.notebook;
    if (!panel) {
      return;
    }
    try {
      const graph = await this.model.client.graph(panel.context.path, panel.context.model.toJSON());
      if (this.model.notebook === panel) {
        this.clearError();
        this.model.graph = graph;
        this.render(graph);
      }
    } catch (err) {
      if (this.model.notebook === panel) {
        this.showError(err);
      }
    }
  }

  private render(graph: Graph | null): void {
    const tasks = graph?.tasks ?? [];
    const list = el('ul', { class: 'flyte-task-list' });
    for (const task of tasks) {
      const link = el('a', { class: 'flyte-task', href: '#', 'data-task': task.name }, task.name);
      link.onclick = e => {
        e.preventDefault();
        this.model.selectCell(task.cell);
      };
      list.append(el('li', {}, link, el('code', {}, signature(task.inputs, task.outputs)),
        el('span', { class: 'flyte-resources' }, resources(task.options)), this.partButtons(task.name)));
    }
    const empty = graph !== null && tasks.length === 0 && graph.diagnostics.length === 0;
    this.tasks.replaceChildren(el('h3', {}, `Tasks (${tasks.length})`), empty ? starterHint() : list);
    this.renderDiagnostics(graph?.diagnostics ?? []);
  }

  /** Run this task only, it and everything upstream, or it and everything downstream (a partial run: what is
   * not run is reused from an earlier run of the notebook). */
  private partButtons(task: string): HTMLElement {
    const parts: [string, string, Selection][] = [
      ['run this', 'this task only, on the outputs of an earlier run', { only: [task] }],
      ['up to here', 'this task and everything it depends on', { to: task }],
      ['from here', 'this task and everything after it, on the earlier outputs it reads', { from: task }]
    ];
    return el('span', { class: 'flyte-task-parts' }, ...parts.map(([label, title, select]) => {
      const button = el('button', { class: 'jp-Button flyte-run-part', title, 'data-part': label }, label);
      button.onclick = () => this.model.partRequested.emit(select);
      return button;
    }));
  }

  private renderDiagnostics(diagnostics: Diagnostic[]): void {
    const list = el('ul', { class: 'flyte-diagnostic-list' });
    for (const d of diagnostics) {
      const where = d.cell ? `cell ${d.cell}${d.line ? `:line ${d.line}` : ''}: ` : '';
      const link = el('a', { class: `flyte-diagnostic flyte-${d.severity}`, href: '#', 'data-cell': String(d.cell ?? '') },
        `${where}${d.severity}[${d.code}]: ${d.message}`);
      link.onclick = e => {
        e.preventDefault();
        this.model.selectCell(d.cell);
      };
      list.append(el('li', {}, link));
    }
    this.diagnostics.replaceChildren(el('h3', {}, `Diagnostics (${diagnostics.length})`), list);
  }

  dispose(): void {
    this.debouncer.dispose();
    super.dispose();
  }
}
