// Form state belongs to its notebook: a section keeps what was entered in its form per open notebook and shows
// each notebook its own again when the sidebar follows it back (a closed notebook's state goes with its panel).
import { NotebookPanel } from '@jupyterlab/notebook';

export class PerNotebook<T> {
  private readonly kept = new WeakMap<NotebookPanel, T>();
  private shown: NotebookPanel | null = null;

  /** `save`: the form's state now; `load`: show a kept state, or a fresh form (undefined). */
  constructor(private readonly save: () => T, private readonly load: (state: T | undefined) => void) {}

  /** The sidebar follows `panel` now: keep the last notebook's state, show this one's. */
  follow(panel: NotebookPanel | null): void {
    if (panel === this.shown) {
      return;
    }
    if (this.shown) {
      this.kept.set(this.shown, this.save());
    }
    this.shown = panel;
    this.load(panel ? this.kept.get(panel) : undefined);
  }
}
