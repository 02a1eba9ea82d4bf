// The REST API of the `flyte_lab` server extension (DESIGN.md 3b): one client method per route the sidebar uses
// (the route table is `flyte_lab/server/handlers.ROUTES`), through Jupyter's own connection settings: the token
// and the XSRF cookie travel with every request. Names in a URL (run ids, tasks, schedules) are encoded.
import { URLExt } from '@jupyterlab/coreutils';
import * as nbformat from '@jupyterlab/nbformat';
import { ServerConnection } from '@jupyterlab/services';

import { InputField } from './form';

export interface Diagnostic {
  severity: 'error' | 'warning';
  code: string;
  task: string | null;
  cell: number | null;
  line: number | null;
  name: string | null;
  message: string;
}

export interface TaskInfo {
  name: string;
  cell: number;
  inputs: Record<string, string>;
  outputs: Record<string, string>;
  options: Record<string, unknown>;
}

export interface Graph {
  tasks: TaskInfo[];
  edges: [string, string, string][];
  workflow_inputs: Record<string, { type: string; default: unknown }>;
  diagnostics: Diagnostic[];
  input_fields: InputField[]; // the server's form for the workflow inputs
}

export interface TaskSummary {
  status: string;
  cell: number;
  error: { type: string; message: string; cell: number | null; line: number | null } | null;
}

// one element of `GET runs`: all the sidebar shows of a run, read by the server in one query for all runs
export interface RunSummary {
  run_id: string;
  notebook: string;
  status: string;
  created_at: string;
  finished_at: string | null;
  cancelled_by: string | null; // who cancelled it (a key of `Statuses.cancelled_by`), for a cancelled run
  schedule: string | null; // the schedule that fired it, for a scheduled run
  scheduled_time: string | null;
  task_counts: Record<string, number>;
  tasks: Record<string, TaskSummary>;
  // tasks finished successfully over all tasks (map-over elements counted), as the widget and dashboard count
  progress: { done: number; total: number };
}

/** One line a task's attempt printed, as the store keeps it (`store/task_output.py`). */
export interface LogLine {
  id: number; // the store's row id: a read's `since`
  task: string;
  attempt: number;
  element: number | null; // the map-over element that printed it
  line: number;
  stream: string; // 'stdout', 'stderr', 'error' (a traceback) or 'display' (a shown value's text)
  text: string;
  at: string;
}

/** `GET runs/ID/tasks/TASK/log?since=N`: the lines after row id N, oldest first, and the task's state read before
 * them (a reader told it ended has every line once a read brings none). */
export interface TaskLog {
  run_id: string;
  task: string;
  status: string;
  lines: LogLine[];
  next: number; // the `since` of the following read
  dropped: string[]; // the attempts whose first lines are no longer kept (`fit`, `fit#2`, `fit[3]`)
}

export interface Schedule {
  name: string;
  path: string; // the notebook, relative to the Jupyter root
  cron: string | null;
  every_s: number | null;
  timezone: string;
  paused: boolean;
  params: Record<string, string>;
  catchup: boolean;
  max_catchup: number;
  max_active: number;
  overlap: string;
  notify: string[]; // EVENT=URL, the URL's secret part redacted
  next_fire_time: string | null;
  invalid: string | null; // why the scheduler skips this stored row, or null
  last_run: { run_id: string; status: string } | null;
}

/** One field of the schedule spec, as its JSON Schema (`GET config` → `schedule_spec`) describes it. */
export interface SpecField {
  default?: unknown;
  description?: string;
  examples?: string[];
  enum?: string[]; // a choice
  minimum?: number;
  maximum?: number;
  events?: string[]; // notify: what a target may be told about
  reserved?: string[]; // params: inputs the scheduler sets itself
}

/** The schedule spec the server judges a schedule by (pydantic's JSON Schema of `scheduler/spec.py`). */
export interface ScheduleSpec {
  properties: Record<string, SpecField>;
  required: string[];
}

/** The server's one vocabulary of run and task states (`flyte_lab/statuses.py`): no copy of it here. */
export interface Statuses {
  run: { all: string[]; live: string[]; terminal: string[]; resumable: string[] };
  task: { all: string[]; live: string[]; terminal: string[]; done: string[] };
  cancelled_by: Record<string, string>; // who cancelled -> how it reads ("cancelled from the JupyterLab sidebar")
}

export interface ServerConfig {
  dashboard_url: string | null;
  schedule_spec: ScheduleSpec;
  statuses: Statuses;
}

/** What a route answered instead of its data: the server's one-line `message` (its diagnostics for a refused
 * launch), or why no answer came. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number, // 0: no answer (the server is down or unreachable)
    readonly diagnostics: Diagnostic[] = []
  ) {
    super(message);
  }
}

export interface RunCreated {
  run_id: string;
}

/** The body of `POST runs`. */
/** Part of the graph to run (`flyte-lab run --only/--from/--to`); the rest is reused from an earlier run. */
export interface Selection {
  only?: string[];
  from?: string;
  to?: string;
}

export interface RunRequest {
  path: string;
  params: Record<string, string>;
  cluster: string;
  select?: Selection;
}

/** A task's executed notebook as `GET runs/ID/tasks/TASK/notebook` answers it. */
export interface ExecutedNotebook {
  name: string;
  content: nbformat.INotebookContent;
}

export class FlyteLabClient {
  private readonly settings = ServerConnection.makeSettings();

  config(): Promise<ServerConfig> {
    return this.request('GET', ['config']);
  }

  /** The graph and diagnostics of a notebook's unsaved `content` (the editor's). */
  graph(path: string, content: unknown): Promise<Graph> {
    return this.request('POST', ['graph'], { body: { path, content } });
  }

  /** A notebook's runs, newest first, each with its progress and its tasks' states. */
  runs(path: string): Promise<RunSummary[]> {
    return this.request('GET', ['runs'], { query: { path } });
  }

  startRun(body: RunRequest): Promise<RunCreated> {
    return this.request('POST', ['runs'], { body });
  }

  /** Cancel a run; the run records that the sidebar cancelled it. */
  cancelRun(runId: string): Promise<{ run_id: string; state: string }> {
    return this.request('POST', ['runs', runId, 'cancel'], { body: { by: 'sidebar' } });
  }

  /** Continue a failed or cancelled run (the notebook as it is now on disk): the same run id. */
  resumeRun(runId: string): Promise<RunCreated> {
    return this.request('POST', ['runs', runId, 'resume'], { body: {} });
  }

  /** A new run of the run's notebook with its parameters: the new run's id. */
  relaunchRun(runId: string): Promise<RunCreated> {
    return this.request('POST', ['runs', runId, 'relaunch'], { body: {} });
  }

  executedNotebook(runId: string, task: string): Promise<ExecutedNotebook> {
    return this.request('GET', ['runs', runId, 'tasks', task, 'notebook']);
  }

  /** What `task` of `runId` printed after line id `since` (0: from its first kept line). */
  taskLog(runId: string, task: string, since: number): Promise<TaskLog> {
    return this.request('GET', ['runs', runId, 'tasks', task, 'log'], { query: { since: String(since) } });
  }

  schedules(path: string): Promise<Schedule[]> {
    return this.request('GET', ['schedules'], { query: { path } });
  }

  /** Save a schedule: `body` is the schedule spec (`scheduler/spec.py`), judged by the server. */
  addSchedule(body: Record<string, unknown>): Promise<Schedule> {
    return this.request('POST', ['schedules'], { body });
  }

  removeSchedule(name: string): Promise<void> {
    return this.request('DELETE', ['schedules', name]);
  }

  pauseSchedule(name: string, paused: boolean): Promise<{ name: string; paused: boolean }> {
    return this.request('POST', ['schedules', name, paused ? 'pause' : 'resume'], { body: {} });
  }

  /** The next fire times of a schedule's timing (`cron` or `every`, `timezone`, `start`). */
  previewSchedule(timing: Record<string, string>): Promise<{ fire_times: string[] }> {
    return this.request('GET', ['schedules', 'preview'], { query: timing });
  }

  private async request<T>(
    method: string,
    parts: string[],
    { body, query }: { body?: unknown; query?: Record<string, string> } = {}
  ): Promise<T> {
    const search = new URLSearchParams(query ?? {}).toString();
    // joined by hand: URLExt.join would normalise the encoded parts as a path
    const route = parts.map(encodeURIComponent).join('/');
    const url = `${URLExt.join(this.settings.baseUrl, 'flyte-lab', 'api')}/${route}${search ? `?${search}` : ''}`;
    const init: RequestInit = { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) };
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new ApiError(`the Jupyter server does not answer (${why})`, 0);
    }
    const text = await response.text();
    let data: unknown = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      // not the extension's JSON (a proxy's error page): said below by its status
    }
    if (!response.ok) {
      const refusal = (data ?? {}) as { message?: unknown; diagnostics?: Diagnostic[] };
      const message = typeof refusal.message === 'string' ? refusal.message : `${response.status} ${response.statusText}`;
      throw new ApiError(message, response.status, refusal.diagnostics ?? []);
    }
    return data as T;
  }
}
