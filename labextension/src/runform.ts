// The Run form: the followed notebook's workflow inputs (typed, from the graph), the cluster, and Run, which
// saves the notebook first and launches it; what happened is said on one line below the button.
import { ApiError, Graph, Selection } from './api';
import { el } from './dom';
import { Control, InputForm } from './form';
import { SidebarModel } from './model';
import { PerNotebook } from './per_notebook';
import { messageOf, Section } from './section';

function describe(select: Selection): string {
  return select.only ? `only ${select.only.join(', ')}` : select.from ? `from ${select.from}` : `up to ${select.to}`;
}

export class RunFormSection extends Section {
  private readonly inputs = new InputForm('run');
  private readonly cluster = el('input', {
    class: 'flyte-cluster', value: 'shared',
    title: 'shared (your warm local executor), local (a private one), tcp://HOST:PORT or k8s'
  });
  private readonly message = el('div', { class: 'flyte-run-message' });
  private refused = false; // the message is the server's refusal of the notebook: gone once it validates
  private readonly state = new PerNotebook<{ cluster: string; message: string; refused: boolean; inputs: Map<string, Control> }>(
    () => ({ cluster: this.cluster.value, message: this.message.textContent ?? '', refused: this.refused, inputs: this.inputs.take() }),
    kept => {
      this.cluster.value = kept?.cluster ?? 'shared';
      this.message.textContent = kept?.message ?? '';
      this.refused = kept?.refused ?? false;
      this.inputs.put(kept?.inputs ?? new Map());
    });

  constructor(private readonly model: SidebarModel) {
    super('run');
    const button = el('button', { class: 'jp-Button flyte-run-button' }, 'Run');
    button.onclick = () => void this.launch();
    this.content.append(el('h3', {}, 'Run'),
      el('div', { class: 'flyte-run-form' }, this.inputs.node, el('label', {}, 'cluster', this.cluster), button, this.message));
    model.notebookChanged.connect((_, panel) => this.state.follow(panel), this);
    model.partRequested.connect((_, select) => void this.launch(select), this);
    // no graph (yet): the inputs are unknown, not none; the controls stay until the graph says
    model.graphChanged.connect((_, graph: Graph | null) => graph && this.graphChanged(graph), this);
    this.state.follow(model.notebook);
  }

  private graphChanged(graph: Graph): void {
    this.inputs.update(graph.input_fields);
    if (this.refused && !graph.diagnostics.some(d => d.severity === 'error')) {
      this.message.textContent = ''; // the refusal is about a notebook that is fixed now
      this.refused = false;
    }
  }

  /** Launch the notebook (saved first) with the form's values; the run appears in the runs section. `select`:
   * only that part of the graph (its upstream outputs are reused from an earlier run, or the server refuses). */
  async launch(select?: Selection): Promise<void> {
    const panel = this.model.notebook;
    if (!panel) {
      return;
    }
    this.message.textContent = '';
    this.refused = false;
    const params = this.inputs.values();
    if (params === null) {
      this.message.textContent = 'fix the inputs marked above';
      return;
    }
    if (panel.context.model.dirty) {
      await panel.context.save();
    }
    try {
      const created = await this.model.client.startRun({
        path: panel.context.path, params, cluster: this.cluster.value || 'shared', ...(select ? { select } : {})
      });
      this.message.textContent = `run ${created.run_id} started${select ? ` (${describe(select)})` : ''}`;
      this.model.runsChanged.emit();
    } catch (err) {
      if (err instanceof ApiError && err.diagnostics.length) {
        // the diagnostics above list the refusal: said there once, not repeated here
        const errors = err.diagnostics.filter(d => d.severity === 'error').length;
        this.message.textContent = `refused: ${errors} error${errors === 1 ? '' : 's'} in the notebook (listed above)`;
        this.refused = true;
        this.model.diagnosticsShown.emit(err.diagnostics);
        return;
      }
      const message = messageOf(err);
      this.message.textContent = this.inputs.showServerError(message) ? 'the server refused an input (marked above)' : message;
    }
  }
}
