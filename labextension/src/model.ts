// What the sidebar's sections share: the notebook it follows (set by the panel), that notebook's graph, the
// server's config, the REST client, and the signals by which an action in one section reaches another.
import { JupyterFrontEnd } from '@jupyterlab/application';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Signal } from '@lumino/signaling';

import { Diagnostic, FlyteLabClient, Graph, Selection, ServerConfig } from './api';

export class SidebarModel {
  readonly client = new FlyteLabClient();
  /** Another notebook is followed (or none): sections forget the last one's state. */
  readonly notebookChanged = new Signal<this, NotebookPanel | null>(this);
  /** The followed notebook's content changed in the editor (not yet saved). */
  readonly edited = new Signal<this, NotebookPanel>(this);
  /** The followed notebook was saved (its runs' list may have changed too: a run saves it first). */
  readonly saved = new Signal<this, NotebookPanel>(this);
  readonly graphChanged = new Signal<this, Graph | null>(this);
  /** Diagnostics to show in place of the graph's: the server's reasons for refusing a launch. */
  readonly diagnosticsShown = new Signal<this, Diagnostic[]>(this);
  /** A run was started or cancelled from the sidebar. */
  readonly runsChanged = new Signal<this, void>(this);
  /** A task's "run this" / "up to here" / "from here": the Run form launches that part of the graph. */
  readonly partRequested = new Signal<this, Selection>(this);
  /** A schedule was saved from the sidebar. */
  readonly schedulesChanged = new Signal<this, void>(this);
  private _notebook: NotebookPanel | null = null;
  private _graph: Graph | null = null;
  private _config: Promise<ServerConfig> | null = null;

  constructor(private readonly app: JupyterFrontEnd) {}

  get notebook(): NotebookPanel | null {
    return this._notebook;
  }

  set notebook(panel: NotebookPanel | null) {
    if (panel === this._notebook) {
      return;
    }
    this._notebook = panel;
    this.graph = null;
    this.notebookChanged.emit(panel);
  }

  /** The followed notebook's path under the Jupyter root ('' when none). */
  get path(): string {
    return this._notebook?.context.path ?? '';
  }

  get graph(): Graph | null {
    return this._graph;
  }

  set graph(graph: Graph | null) {
    this._graph = graph;
    this.graphChanged.emit(graph);
  }

  /** The server's config, asked once it answers (a failed request is asked again next time). */
  config(): Promise<ServerConfig> {
    if (!this._config) {
      const asked = this.client.config();
      this._config = asked;
      asked.catch(() => {
        if (this._config === asked) {
          this._config = null;
        }
      });
    }
    return this._config;
  }

  /** Select (and scroll to) cell `cell` (1-based, as diagnostics count) of the followed notebook. */
  selectCell(cell: number | null): void {
    const panel = this._notebook;
    if (!panel || cell === null) {
      return;
    }
    this.app.shell.activateById(panel.id);
    const notebook = panel.content;
    notebook.activeCellIndex = cell - 1;
    notebook.deselectAll();
    if (notebook.widgets[cell - 1]) {
      void notebook.scrollToItem(cell - 1, 'center');
    }
  }

  dispose(): void {
    Signal.clearData(this);
  }
}
