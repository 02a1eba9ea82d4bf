// The REST API of the `flyte_lab` server extension (DESIGN.md 3b), through Jupyter's own connection
// settings: the token and the XSRF cookie travel with every request.
import { URLExt } from '@jupyterlab/coreutils';
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
  task_counts: Record<string, number>;
  tasks: Record<string, TaskSummary>;
  // tasks finished successfully over all tasks (map-over elements counted), as the widget and dashboard count
  progress: { done: number; total: number };
}

export interface Schedule {
  name: string;
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
}

export interface ServerConfig {
  dashboard_url: string | null;
  schedule_spec: ScheduleSpec;
  statuses: Statuses;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly diagnostics: Diagnostic[] = []
  ) {
    super(message);
  }
}

export async function api<T>(route: string, init: RequestInit = {}, query: Record<string, string> = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const search = new URLSearchParams(query).toString();
  const url = URLExt.join(settings.baseUrl, 'flyte-lab', 'api', route) + (search ? `?${search}` : '');
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new ApiError(data?.message ?? response.statusText, response.status, data?.diagnostics ?? []);
  }
  return data as T;
}

export function post<T>(route: string, body: unknown): Promise<T> {
  return api<T>(route, { method: 'POST', body: JSON.stringify(body) });
}
