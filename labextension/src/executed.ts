// A task's executed notebook, rendered as an untrusted notebook (cells, outputs, errors) in a read-only
// main-area tab, opened at its failing cell, with the run context cell (flyte_context, internal paths) collapsed.
// Its JSON comes from the server route, which reads it wherever the artifact store keeps it (a local
// folder, S3, ...): no file under the Jupyter root, no kernel, nothing to save.
import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { IEditorServices } from '@jupyterlab/codeeditor';
import { NotebookModel, NotebookPanel, StaticNotebook } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { FlyteLabClient } from './api';

export interface ViewerServices {
  rendermime: IRenderMimeRegistry;
  contentFactory: NotebookPanel.IContentFactory;
  editorServices: IEditorServices;
}

/** The widget id of a task's executed-notebook tab (one tab per run and task). */
export function executedId(runId: string, task: string): string {
  return `flyte-executed-${runId}-${task}`;
}

/** Open (or bring forward) the executed notebook of `task`'s last attempt in `runId`. */
export async function openExecuted(
  app: JupyterFrontEnd, services: ViewerServices, client: FlyteLabClient, runId: string, task: string
): Promise<void> {
  const id = executedId(runId, task);
  for (const widget of app.shell.widgets('main')) {
    if (widget.id === id) {
      app.shell.activateById(id);
      return;
    }
  }
  const answer = await client.executedNotebook(runId, task);
  const model = new NotebookModel();
  model.fromJSON(answer.content);
  // never trusted, whatever the file says (the server drops trust marks too): Lab then sanitises the outputs'
  // HTML and runs none of their scripts; a task writes what it likes into its outputs
  for (const cell of model.cells) {
    cell.trusted = false;
  }
  model.dirty = false;
  const notebook = new StaticNotebook({
    rendermime: services.rendermime,
    contentFactory: services.contentFactory,
    mimeTypeService: services.editorServices.mimeTypeService,
    notebookConfig: { ...StaticNotebook.defaultNotebookConfig, windowingMode: 'none' }
  });
  notebook.model = model;
  for (const cell of notebook.widgets) {
    cell.readOnly = true;
    // the context papermill injects (tagged so; newer runs also mark it `source_hidden`): collapsed, not removed
    if (tagsOf(cell).includes(CONTEXT_TAG)) {
      cell.inputHidden = true;
    }
  }
  const failing = notebook.widgets.find(cell => (cell.model.toJSON().outputs as { output_type: string }[] | undefined)
    ?.some(output => output.output_type === 'error'));
  failing?.addClass(FAILING_CLASS);
  notebook.addClass('flyte-executed-notebook');
  const widget = new MainAreaWidget({ content: notebook });
  widget.id = id;
  widget.addClass('flyte-executed');
  widget.title.label = `${answer.name} (read-only)`;
  widget.title.caption = `executed notebook of task ${task}, run ${runId} (read-only)`;
  widget.disposed.connect(() => model.dispose());
  app.shell.add(widget, 'main');
  app.shell.activateById(id);
  if (failing) {
    // laid out once the tab is shown: then scroll its failing cell into view
    requestAnimationFrame(() => failing.node.scrollIntoView({ block: 'start' }));
  }
}

const CONTEXT_TAG = 'injected-parameters';
/** The class of the cell whose error ended the attempt. */
export const FAILING_CLASS = 'flyte-failing-cell';

function tagsOf(cell: StaticNotebook['widgets'][number]): string[] {
  const tags = cell.model.getMetadata('tags');
  return Array.isArray(tags) ? (tags as string[]) : [];
}
