// The followed notebook's recent runs, from the store through `GET runs` (one request for all of them): status,
// progress, Cancel while live, who cancelled a cancelled run, Resume (after a fix) and Relaunch once ended, a failed
// task's error (selects its cell) and its executed notebook. Asked every second while one of them is live, else every
// five seconds, so runs started elsewhere (CLI, scheduler, another tab) show up too. A live run lists its tasks,
// each with the tail of its output (`task_output.ts`), read by a poll of its own about every second.
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Poll } from '@lumino/polling';

import { RunSummary } from './api';
import { el } from './dom';
import { openExecuted, ViewerServices } from './executed';
import { SidebarModel } from './model';
import { Section } from './section';
import { TaskTails } from './task_output';

const LIVE_POLL_MS = 1000;
const OUTPUT_POLL_MS = 1000; // the open output tails of tasks that may still print
const IDLE_POLL_MS = 5000;
const SHOWN = 5; // the newest runs shown
const DEFAULT_DASHBOARD = 'http://127.0.0.1:5006';

export class RunsSection extends Section {
  private readonly list = el('ul', { class: 'flyte-run-list' });
  private readonly poller: Poll;
  private readonly outputs: Poll;
  private readonly tails: TaskTails;
  private resumable = new Set<string>(); // the run states Resume continues (the server's word)
  private relaunched: string | null = null; // the run a Relaunch here started: shown and scrolled to

  constructor(
    private readonly model: SidebarModel,
    private readonly app: JupyterFrontEnd,
    private readonly viewer: ViewerServices
  ) {
    super('runs');
    this.content.append(el('h3', {}, 'Recent runs'), this.list);
    this.poller = this.poll('runs', IDLE_POLL_MS, () => this.refresh());
    this.tails = new TaskTails(model.client, () => void this.outputs.refresh()); // an output opened: read it now
    this.outputs = this.poll('output', OUTPUT_POLL_MS, () => this.tails.refresh());
    model.notebookChanged.connect(() => {
      this.list.replaceChildren();
      this.tails.keep();
      this.clearError();
      this.refreshPolls();
    }, this);
    model.saved.connect(() => this.refreshPolls(), this);
    model.runsChanged.connect(() => this.refreshPolls(), this);
  }

  private async refresh(): Promise<void> {
    const path = this.model.path;
    if (!path) {
      return;
    }
    const config = await this.model.config();
    const summaries = await this.model.client.runs(path);
    if (this.model.path !== path) {
      return; // another notebook meanwhile: its own refresh draws it
    }
    const live = new Set(config.statuses.run.live); // the run states that may still change (the server's word)
    this.resumable = new Set(config.statuses.run.resumable);
    const runs = summaries.slice(0, SHOWN);
    this.render(runs, live, new Set(config.statuses.task.terminal), config.statuses.cancelled_by,
      config.dashboard_url || DEFAULT_DASHBOARD);
    const interval = runs.some(r => live.has(r.status)) ? LIVE_POLL_MS : IDLE_POLL_MS;
    this.poller.frequency = { ...this.poller.frequency, interval };
  }

  private render(runs: RunSummary[], live: Set<string>, terminal: Set<string>, cancelledBy: Record<string, string>,
    dashboard: string): void {
    this.tails.keep(new Set(runs.map(run => run.run_id)));
    this.list.replaceChildren(...runs.map(run => {
      const item = this.item(run, live.has(run.status), cancelledBy, dashboard);
      const tasks = this.tails.rows(run, live.has(run.status), terminal);
      if (tasks.length) {
        item.append(el('div', { class: 'flyte-run-tasks' }, ...tasks));
      }
      return item;
    }));
    this.tails.keepScroll();
    const started = this.relaunched && this.list.querySelector(`[data-run="${CSS.escape(this.relaunched)}"]`);
    if (started) {
      started.classList.add('flyte-run-new');
      started.scrollIntoView({ block: 'nearest' });
    }
  }

  /** Relaunch `runId` and take the sidebar to the new run (marked until another is relaunched). */
  private async relaunch(runId: string): Promise<void> {
    await this.act(this.model.client.relaunchRun(runId).then(created => {
      this.relaunched = created.run_id;
    }));
  }

  private item(run: RunSummary, live: boolean, cancelledBy: Record<string, string>, dashboard: string): HTMLElement {
    const { done, total } = run.progress;
    const item = el('li', { class: `flyte-run flyte-run-${run.status}`, 'data-run': run.run_id },
      el('span', { class: 'flyte-run-id' }, run.run_id), ' ',
      el('span', { class: 'flyte-run-status' }, run.status), ' ',
      ...(run.schedule ? [el('span', { class: 'flyte-run-scheduled', title: `fired by schedule ${run.schedule} for ${run.scheduled_time ?? '?'}` },
        `scheduled: ${run.schedule}`), ' '] : []),
      el('progress', { max: String(total), value: String(done) }),
      el('span', {}, ` ${done}/${total} `),
      el('a', { href: `${dashboard}/run?id=${encodeURIComponent(run.run_id)}`, target: '_blank', rel: 'noopener' }, 'dashboard'));
    if (live) {
      const cancel = el('button', { class: 'jp-Button flyte-cancel' }, 'Cancel');
      cancel.onclick = () => void this.act(this.model.client.cancelRun(run.run_id));
      item.append(' ', cancel);
    } else {
      if (this.resumable.has(run.status)) {
        const resume = el('button', { class: 'jp-Button flyte-resume', title: 'continue this run with the notebook as it is now' }, 'Resume');
        resume.onclick = () => void this.act(this.model.client.resumeRun(run.run_id));
        item.append(' ', resume);
      }
      const relaunch = el('button', { class: 'jp-Button flyte-relaunch', title: 'a new run with the same inputs' }, 'Relaunch');
      relaunch.onclick = () => void this.relaunch(run.run_id);
      item.append(' ', relaunch);
    }
    if (run.cancelled_by) { // who stopped it, once: the tasks it stopped are nobody's error
      item.append(el('div', { class: 'flyte-run-cancelled-by' }, cancelledBy[run.cancelled_by] ?? 'cancelled'));
    }
    for (const [name, task] of Object.entries(run.tasks)) {
      if (task.status === 'failed' && task.error) { // a cancelled task's error names no place to look at
        const cell = task.error.cell ?? task.cell;
        const line = task.error.line === null || task.error.line === undefined ? '' : `, line ${task.error.line}`;
        const where = el('a', { href: '#', class: 'flyte-run-error-cell' },
          `${name}: ${task.error.type}: ${task.error.message} (cell ${cell}${line})`);
        where.onclick = e => {
          e.preventDefault();
          this.model.selectCell(cell);
        };
        const open = el('button', { class: 'jp-Button flyte-open-executed' }, 'executed notebook');
        open.onclick = () =>
          void openExecuted(this.app, this.viewer, this.model.client, run.run_id, name).catch(err => this.showError(err));
        item.append(el('div', { class: 'flyte-task-error' }, where, ' ', open));
      }
    }
    return item;
  }
}
