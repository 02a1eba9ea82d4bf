// The "Flyte" sidebar: follows the active notebook and tells its sections (a lumino `PanelLayout` of widgets, each
// with one job) through the shared `SidebarModel`: its graph, the Run form, its runs, the schedule form, its
// schedules. Each section asks the server for its own part; the panel holds no state of theirs.
import { JupyterFrontEnd } from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { PanelLayout, Widget } from '@lumino/widgets';

import { el } from './dom';
import { ViewerServices } from './executed';
import { GraphSection } from './graph';
import { SidebarModel } from './model';
import { RunFormSection } from './runform';
import { RunsSection } from './runs';
import { ScheduleForm } from './schedule';
import { SchedulesSection } from './schedules';

/** The sidebar's title and the followed notebook's path. */
class NotebookHeader extends Widget {
  constructor(model: SidebarModel) {
    super({ node: el('section', { class: 'flyte-section-notebook' }) });
    const show = () =>
      this.node.replaceChildren(el('h2', {}, 'Flyte'), el('div', { class: 'flyte-path' }, model.path || 'no notebook open'));
    model.notebookChanged.connect(show, this);
    show();
  }
}

export class FlytePanel extends Widget {
  readonly model: SidebarModel;
  private readonly runForm: RunFormSection;
  private readonly watched = new WeakSet<NotebookPanel>();

  constructor(tracker: INotebookTracker, app: JupyterFrontEnd, viewer: ViewerServices) {
    super();
    this.id = 'flyte-lab-panel';
    this.title.label = 'Flyte';
    this.title.caption = 'Flyte: tasks, diagnostics, runs and schedules of this notebook';
    this.addClass('flyte-panel');
    const model = (this.model = new SidebarModel(app));
    this.runForm = new RunFormSection(model);
    const layout = (this.layout = new PanelLayout());
    for (const section of [new NotebookHeader(model), new GraphSection(model), this.runForm, new RunsSection(model, app, viewer),
      new ScheduleForm(model), new SchedulesSection(model)]) {
      layout.addWidget(section);
    }
    tracker.currentChanged.connect(() => this.follow(tracker.currentWidget), this);
    this.follow(tracker.currentWidget);
  }

  /** Launch the followed notebook with the Run form's values (the "Flyte: Run notebook" command). */
  launch(): Promise<void> {
    return this.runForm.launch();
  }

  private follow(panel: NotebookPanel | null): void {
    this.model.notebook = panel;
    if (!panel || this.watched.has(panel)) {
      return;
    }
    this.watched.add(panel);
    // edits and saves of every notebook once followed; the model passes on those of the one it follows now
    void panel.context.ready.then(() => {
      if (this.isDisposed) {
        return;
      }
      panel.context.model.contentChanged.connect(() => this.tell(this.model.edited, panel), this);
      panel.context.fileChanged.connect(() => this.tell(this.model.saved, panel), this);
    });
  }

  private tell(signal: SidebarModel['edited'], panel: NotebookPanel): void {
    if (panel === this.model.notebook) { // a notebook in the background changed (its kernel, a save): not shown
      signal.emit(panel);
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    super.dispose(); // the sections first (their polls, their connections to the model)
    this.model.dispose();
  }
}
