// The sidebar panel: follows the active notebook and shows its graph (from the editor's current content,
// debounced), a run form, its recent runs (live) and its schedules.
import { JupyterFrontEnd } from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import { api, ApiError, Diagnostic, Graph, post, RunSummary, Schedule, ServerConfig } from './api';
import { el } from './dom';
import { openExecuted, ViewerServices } from './executed';
import { InputForm } from './form';
import { ScheduleForm } from './schedule';

const DEBOUNCE_MS = 400;
const POLL_MS = 1000;
const IDLE_POLL_MS = 5000; // runs started elsewhere (CLI, scheduler, another tab) show up too

function signature(inputs: Record<string, string>, outputs: Record<string, string>): string {
  const ins = Object.entries(inputs).map(([n, t]) => `${n}: ${t}`).join(', ');
  const outs = Object.entries(outputs).map(([n, t]) => `${n}: ${t}`).join(', ');
  return `(${ins}) -> ${outs || 'None'}`;
}

function resources(options: Record<string, unknown>): string {
  return Object.entries(options)
    .filter(([, v]) => v !== null && v !== false && v !== undefined && !(Array.isArray(v) && v.length === 0))
    .map(([k, v]) => (v === true ? `--${k}` : `--${k} ${Array.isArray(v) ? v.join(',') : String(v)}`))
    .join(' ');
}

export class FlytePanel extends Widget {
  private notebook: NotebookPanel | null = null;
  private graph: Graph | null = null;
  private runs: RunSummary[] = [];
  private schedules: Schedule[] = [];
  private dashboardUrl = 'http://127.0.0.1:5006';
  private readonly config = api<ServerConfig>('config');
  private liveRun = new Set<string>(); // the run states that may still change (the server's vocabulary)
  private runMessage = '';
  private readonly watched = new WeakSet<NotebookPanel>();
  private timer = 0;
  private poller = 0;
  private readonly sections: Record<string, HTMLElement> = {};
  private readonly inputs = new InputForm('run');
  private readonly scheduleForm: ScheduleForm;
  private readonly cluster = el('input', { class: 'flyte-cluster', value: 'shared', title: 'shared (your warm local executor), local (a private one), tcp://HOST:PORT or k8s' });

  constructor(
    tracker: INotebookTracker,
    private readonly app: JupyterFrontEnd,
    private readonly viewer: ViewerServices,
    private readonly onDiagnostics: (count: number | null) => void
  ) {
    super();
    this.id = 'flyte-lab-panel';
    this.title.label = 'Flyte';
    this.title.caption = 'Flyte: tasks, diagnostics, runs and schedules of this notebook';
    this.addClass('flyte-panel');
    for (const name of ['notebook', 'tasks', 'diagnostics', 'run', 'runs', 'schedule', 'schedules']) {
      this.sections[name] = el('section', { class: `flyte-section-${name}` });
      this.node.append(this.sections[name]);
    }
    this.scheduleForm = new ScheduleForm(() => this.path, () => this.refreshSchedules());
    this.sections.schedule.replaceChildren(el('h3', {}, 'Schedule'), this.scheduleForm.node);
    void this.config.then(c => {
      this.dashboardUrl = c.dashboard_url || this.dashboardUrl;
      this.scheduleForm.setSpec(c.schedule_spec);
    });
    tracker.currentChanged.connect(() => this.follow(tracker.currentWidget));
    this.follow(tracker.currentWidget);
  }

  private follow(panel: NotebookPanel | null): void {
    if (panel === this.notebook) {
      return;
    }
    this.notebook = panel;
    this.runMessage = '';
    this.inputs.clear();
    this.scheduleForm.params.clear();
    this.graph = null;
    this.runs = [];
    this.schedules = [];
    this.render();
    if (!panel) {
      this.onDiagnostics(null);
      return;
    }
    void panel.context.ready.then(() => {
      if (this.notebook !== panel) {
        return;
      }
      if (!this.watched.has(panel)) {
        this.watched.add(panel);
        panel.context.model.contentChanged.connect(() => this.scheduleGraph(panel));
        panel.context.fileChanged.connect(() => {
          this.scheduleGraph(panel);
          if (this.notebook === panel) {
            void this.refreshRuns();
          }
        });
      }
      this.scheduleGraph(panel);
      void this.refreshRuns();
      void this.refreshSchedules();
    });
  }

  private get path(): string {
    return this.notebook?.context.path ?? '';
  }

  private scheduleGraph(panel: NotebookPanel): void {
    if (panel !== this.notebook) {
      return; // a notebook in the background changed (its kernel, a save): not the one shown
    }
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => void this.refreshGraph(panel), DEBOUNCE_MS);
  }

  private async refreshGraph(panel: NotebookPanel): Promise<void> {
    try {
      const content = panel.context.model.toJSON();
      const graph = await post<Graph>('graph', { path: panel.context.path, content });
      if (this.notebook === panel) {
        this.graph = graph;
        this.onDiagnostics(graph.diagnostics.length);
        this.render();
      }
    } catch (err) {
      this.showError('diagnostics', err);
    }
  }

  /** Select (and scroll to) cell `cell` (1-based, as diagnostics count). */
  selectCell(cell: number | null): void {
    const panel = this.notebook;
    if (!panel || cell === null) {
      return;
    }
    this.app.shell.activateById(panel.id);
    const notebook = panel.content;
    notebook.activeCellIndex = cell - 1;
    notebook.deselectAll();
    const widget = notebook.widgets[cell - 1];
    if (widget) {
      void notebook.scrollToItem(cell - 1, 'center');
    }
  }

  private render(): void {
    const s = this.sections;
    s.notebook.replaceChildren(el('h2', {}, 'Flyte'), el('div', { class: 'flyte-path' }, this.path || 'no notebook open'));
    this.renderTasks();
    this.renderDiagnostics(this.graph?.diagnostics ?? []);
    this.renderRunForm();
    this.renderRuns();
    this.renderSchedules();
  }

  private renderTasks(): void {
    const tasks = this.graph?.tasks ?? [];
    const list = el('ul', { class: 'flyte-task-list' });
    for (const task of tasks) {
      const link = el('a', { class: 'flyte-task', href: '#', 'data-task': task.name }, task.name);
      link.onclick = e => {
        e.preventDefault();
        this.selectCell(task.cell);
      };
      list.append(
        el('li', {}, link, el('code', {}, signature(task.inputs, task.outputs)), el('span', { class: 'flyte-resources' }, resources(task.options)))
      );
    }
    this.sections.tasks.replaceChildren(el('h3', {}, `Tasks (${tasks.length})`), list);
  }

  private renderDiagnostics(diagnostics: Diagnostic[]): void {
    const list = el('ul', { class: 'flyte-diagnostic-list' });
    for (const d of diagnostics) {
      const where = d.cell ? `cell ${d.cell}${d.line ? `:line ${d.line}` : ''}: ` : '';
      const link = el('a', { class: `flyte-diagnostic flyte-${d.severity}`, href: '#', 'data-cell': String(d.cell ?? '') },
        `${where}${d.severity}[${d.code}]: ${d.message}`);
      link.onclick = e => {
        e.preventDefault();
        this.selectCell(d.cell);
      };
      list.append(el('li', {}, link));
    }
    this.sections.diagnostics.replaceChildren(el('h3', {}, `Diagnostics (${diagnostics.length})`), list);
  }

  private renderRunForm(): void {
    const fields = this.graph?.input_fields ?? [];
    this.inputs.update(fields);
    this.scheduleForm.setFields(fields);
    const button = el('button', { class: 'jp-Button flyte-run-button' }, 'Run');
    button.onclick = () => void this.launch();
    const form = el('div', { class: 'flyte-run-form' }, this.inputs.node, el('label', {}, 'cluster', this.cluster), button,
      el('div', { class: 'flyte-run-message' }, this.runMessage));
    this.sections.run.replaceChildren(el('h3', {}, 'Run'), form);
  }

  /** Launch the notebook (saved first) with the form's values; the run appears in the list. */
  async launch(): Promise<void> {
    const panel = this.notebook;
    if (!panel) {
      return;
    }
    const say = (text: string) => {
      this.runMessage = text;
      const box = this.sections.run.querySelector('.flyte-run-message');
      if (box) {
        box.textContent = text;
      }
    };
    say('');
    const params = this.inputs.values();
    if (params === null) {
      say('fix the inputs marked above');
      return;
    }
    if (panel.context.model.dirty) {
      await panel.context.save();
    }
    try {
      const created = await post<{ run_id: string }>('runs', { path: panel.context.path, params, cluster: this.cluster.value || 'shared' });
      say(`run ${created.run_id} started`);
      await this.refreshRuns();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      say(this.inputs.showServerError(message) ? 'the server refused an input (marked above)' : message);
      if (err instanceof ApiError && err.diagnostics.length) {
        this.renderDiagnostics(err.diagnostics);
      }
    }
  }

  private async refreshRuns(): Promise<void> {
    const path = this.path;
    if (!path) {
      return;
    }
    try {
      this.liveRun = new Set((await this.config).statuses.run.live);
      // one request: the summaries carry each run's progress and its tasks' states
      const summaries = await api<RunSummary[]>('runs', {}, { path });
      if (this.path === path) {
        this.runs = summaries.slice(0, 5);
        this.renderRuns();
      }
    } catch (err) {
      this.showError('runs', err);
    }
    window.clearTimeout(this.poller);
    if (this.path === path) {
      const live = this.runs.some(r => this.liveRun.has(r.status));
      this.poller = window.setTimeout(() => void this.refreshRuns(), live ? POLL_MS : IDLE_POLL_MS);
    }
  }

  private renderRuns(): void {
    const list = el('ul', { class: 'flyte-run-list' });
    for (const run of this.runs) {
      const tasks = Object.entries(run.tasks);
      const { done, total } = run.progress;
      const item = el('li', { class: `flyte-run flyte-run-${run.status}`, 'data-run': run.run_id },
        el('span', { class: 'flyte-run-id' }, run.run_id), ' ',
        el('span', { class: 'flyte-run-status' }, run.status), ' ',
        el('progress', { max: String(total), value: String(done) }),
        el('span', {}, ` ${done}/${total} `),
        el('a', { href: `${this.dashboardUrl}/run?id=${run.run_id}`, target: '_blank', rel: 'noopener' }, 'dashboard'));
      if (this.liveRun.has(run.status)) {
        const cancel = el('button', { class: 'jp-Button flyte-cancel' }, 'Cancel');
        cancel.onclick = () => void post(`runs/${run.run_id}/cancel`, {}).then(() => this.refreshRuns());
        item.append(' ', cancel);
      }
      for (const [name, task] of tasks) {
        if (task.error) { // only a failed task has one
          const where = el('a', { href: '#', class: 'flyte-run-error-cell' },
            `${name}: ${task.error.type}: ${task.error.message} (cell ${task.error.cell ?? task.cell}, line ${task.error.line ?? '?'})`);
          where.onclick = e => {
            e.preventDefault();
            this.selectCell(task.error?.cell ?? task.cell);
          };
          const open = el('button', { class: 'jp-Button flyte-open-executed' }, 'executed notebook');
          open.onclick = () =>
            void openExecuted(this.app, this.viewer, run.run_id, name).catch(err => this.showError('runs', err));
          item.append(el('div', { class: 'flyte-task-error' }, where, ' ', open));
        }
      }
      list.append(item);
    }
    this.sections.runs.replaceChildren(el('h3', {}, 'Recent runs'), list);
  }

  private async refreshSchedules(): Promise<void> {
    if (!this.path) {
      return;
    }
    try {
      this.schedules = await api<Schedule[]>('schedules', {}, { path: this.path });
      this.renderSchedules();
    } catch (err) {
      this.showError('schedules', err);
    }
  }

  private renderSchedules(): void {
    const list = el('ul', { class: 'flyte-schedule-list' });
    for (const s of this.schedules) {
      const toggle = el('button', { class: 'jp-Button flyte-schedule-toggle' }, s.paused ? 'Resume' : 'Pause');
      toggle.onclick = () => void post(`schedules/${encodeURIComponent(s.name)}/${s.paused ? 'resume' : 'pause'}`, {}).then(() => this.refreshSchedules());
      const remove = el('button', { class: 'jp-Button flyte-schedule-remove' }, 'Remove');
      remove.onclick = () => void api(`schedules/${encodeURIComponent(s.name)}`, { method: 'DELETE' }).then(() => this.refreshSchedules());
      const params = Object.entries(s.params ?? {}).map(([k, v]) => `${k}=${v}`).join(' ');
      const policy = [s.catchup ? `catch-up (at most ${s.max_catchup})` : 'no catch-up',
        `max active ${s.max_active}, overlap ${s.overlap}`, params ? `-p ${params}` : '',
        ...(s.notify ?? []).map(n => `notify ${n}`)].filter(Boolean).join('; ');
      list.append(el('li', { class: 'flyte-schedule', 'data-schedule': s.name },
        `${s.name}: ${s.cron ?? `every ${s.every_s}s`} (${s.timezone}) ${s.invalid ? `invalid: ${s.invalid}` : s.paused ? 'paused' : `next ${s.next_fire_time}`} `,
        toggle, ' ', remove, el('div', { class: 'flyte-schedule-policy' }, policy)));
    }
    this.sections.schedules.replaceChildren(el('h3', {}, 'Schedules'), list);
  }

  private showError(section: string, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.sections[section].append(el('div', { class: 'flyte-error' }, message));
  }
}
