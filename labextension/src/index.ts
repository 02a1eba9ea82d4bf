// The "Flyte" sidebar, its status-bar item and the "Flyte: Run notebook" command.
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { IEditorServices } from '@jupyterlab/codeeditor';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { IStateDB } from '@jupyterlab/statedb';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { openExecuted, ViewerServices } from './executed';
import { FlytePanel } from './panel';

const RUN_COMMAND = 'flyte-lab:run-notebook';
// set in a workspace once the sidebar was shown there: from then on Lab's restorer keeps it open or closed
const SHOWN_ONCE = 'flyte-lab:sidebar-shown';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'flyte-lab:sidebar',
  description: 'Tasks, diagnostics, runs and schedules of the active notebook',
  autoStart: true,
  requires: [INotebookTracker, ILabShell, IRenderMimeRegistry, NotebookPanel.IContentFactory, IEditorServices],
  optional: [IStatusBar, ICommandPalette, ILayoutRestorer, IStateDB],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    shell: ILabShell,
    rendermime: IRenderMimeRegistry,
    contentFactory: NotebookPanel.IContentFactory,
    editorServices: IEditorServices,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    state: IStateDB | null
  ) => {
    const status = new Widget();
    status.addClass('flyte-status');
    status.node.textContent = 'Flyte: -';
    const viewer: ViewerServices = { rendermime, contentFactory, editorServices };
    const panel = new FlytePanel(tracker, app, viewer);
    // the run widget's "executed notebook" link (a kernel's output, `run_widget.failures_html`): the same
    // read-only view the sidebar opens
    document.addEventListener('click', event => {
      const link = event.target instanceof Element ? event.target.closest('a[data-flyte-executed-run]') : null;
      const runId = link?.getAttribute('data-flyte-executed-run');
      const task = link?.getAttribute('data-flyte-executed-task');
      if (!runId || !task) {
        return;
      }
      event.preventDefault();
      openExecuted(app, viewer, panel.model.client, runId, task).catch(err =>
        void showErrorMessage('Flyte: executed notebook', err instanceof Error ? err.message : String(err)));
    });
    panel.model.graphChanged.connect((_, graph) => {
      const count = graph?.diagnostics.length;
      status.node.textContent = count === undefined ? 'Flyte: -' : `Flyte: ${count} diagnostic${count === 1 ? '' : 's'}`;
    });
    shell.add(panel, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(panel, panel.id); // open after a reload if it was open
    }
    if (state) {
      // a workspace's first Lab with flyte_lab opens on the sidebar; later ones as the user left them
      void Promise.all([state.fetch(SHOWN_ONCE), app.restored]).then(([shown]) => {
        if (!shown) {
          shell.activateById(panel.id);
          void state.save(SHOWN_ONCE, true);
        }
      });
    }
    if (statusBar) {
      statusBar.registerStatusItem('flyte-lab:diagnostics', { item: status, align: 'left', rank: 50 });
    }
    app.commands.addCommand(RUN_COMMAND, {
      label: 'Flyte: Run notebook',
      isEnabled: () => tracker.currentWidget !== null,
      execute: async () => {
        shell.activateById(panel.id);
        await panel.launch();
      }
    });
    if (palette) {
      palette.addItem({ command: RUN_COMMAND, category: 'Flyte' });
    }
  }
};

export default plugin;
