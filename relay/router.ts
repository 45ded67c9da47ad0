import type { AbortCode } from './protocol/constants.ts';

/** What the relay core needs from a connected agent, wherever it is connected. */
export interface AgentPort {
  readonly id: string;
  /** Certificate serial of the connection (lowercase hex). */
  readonly serial: string;
  readonly since: Date;
  /** Queues one encoded frame; `onWritten` runs once it left this process (or failed). */
  deliver(frame: Buffer, onWritten?: (err?: Error) => void): void;
  /** Bytes queued towards this agent and not yet written. */
  pendingBytes(): number;
}

/** One connected agent as listed by `/v1/agents`. */
export interface AgentInfo {
  id: string;
  since: string;
  serial: string;
}

/**
 * Presence and delivery for agents. The single-node router keeps them in
 * memory; a multi-node router (NATS subjects per agent, request/reply for
 * presence) implements the same interface.
 */
export interface Router {
  /** Subscribes a connected agent; returns the port it replaces, if any. */
  attach(port: AgentPort): AgentPort | undefined;
  /** Unsubscribes `port` if it is still the one registered for its id. */
  detach(port: AgentPort): void;
  /** Presence lookup: the port an agent is reachable through, or undefined. */
  resolve(id: string): AgentPort | undefined;
  /** Agents connected through this router. */
  list(): AgentInfo[];
  /** Resolves once an attached port is reachable from other nodes (before the agent is greeted). */
  whenAttached?(port: AgentPort): Promise<void>;
  /** Delivery via other relay nodes; absent on a single node. */
  readonly remote?: RemoteDelivery;
}

/** Outcome of asking the node that holds an agent to open a transfer leg. */
export type RemoteOpen = { node: string; leg: number } | { refused: AbortCode; reason: string };

/** What the hub answers for traffic arriving from other nodes. */
export interface RemoteHandlers {
  /** Another node opens a transfer from `from` (its leg `leg`) to local agent `to`. */
  open(fromNode: string, leg: number, from: string, to: string, meta: Buffer): RemoteOpen;
  /** A routed MESSAGE frame (peer field = sender) for local agent `to`; returns why it was not delivered, if so. */
  message(to: string, frame: Buffer): AbortCode | undefined;
  /** A transfer frame whose id is one of this node's legs. */
  frame(frame: Buffer): void;
}

/**
 * Delivery via other relay nodes. Transfers crossing nodes have a leg on each
 * node; frames between them carry the receiving node's leg id in the frame id.
 */
export interface RemoteDelivery {
  readonly nodeId: string;
  /** Credit forwarded per cross-node transfer beyond the data received so far. */
  readonly window: number;
  /** A node silent this long while sharing transfers with us is probed. */
  readonly nodeCheckMs: number;
  bind(handlers: RemoteHandlers): void;
  /** Presence lookup plus open on the node holding `to`; `no-route` at once when nobody answers. */
  open(to: string, from: string, leg: number, meta: Buffer): Promise<RemoteOpen>;
  /** Routes a MESSAGE frame (peer field = sender) to `to`; `settle` is called once, with why not, or undefined once delivered. */
  message(to: string, frame: Buffer, settle: (code: AbortCode | undefined) => void): void;
  /** Sends a transfer frame to `node` (split to fit the NATS payload limit when needed). */
  send(node: string, frame: Buffer): void;
  /** True when `node` answers a ping. */
  probe(node: string): Promise<boolean>;
}

/** In-process router for one relay node: newest connection of an id wins. */
export class LocalRouter implements Router {
  private readonly ports = new Map<string, AgentPort>();

  attach(port: AgentPort): AgentPort | undefined {
    const previous = this.ports.get(port.id);
    this.ports.set(port.id, port);
    return previous === port ? undefined : previous;
  }

  detach(port: AgentPort): void {
    if (this.ports.get(port.id) === port) this.ports.delete(port.id);
  }

  resolve(id: string): AgentPort | undefined {
    return this.ports.get(id);
  }

  list(): AgentInfo[] {
    return [...this.ports.values()].map((p) => ({ id: p.id, since: p.since.toISOString(), serial: p.serial })).sort((a, b) => a.id.localeCompare(b.id));
  }
}
