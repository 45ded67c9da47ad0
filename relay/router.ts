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
    return [...this.ports.values()]
      .map((p) => ({ id: p.id, since: p.since.toISOString(), serial: p.serial }))
      .sort((a, b) => a.id.localeCompare(b.id));
  }
}
