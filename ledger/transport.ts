/**
 * What replication needs from a network: send a small message to a named
 * peer, and hear messages with the (authenticated) name of the peer that sent
 * them. The agent plugs in the relay's small-message channel.
 */
export interface ReplicationTransport {
  send(peer: string, message: string): void | Promise<void>;
  /** Registers the handler; returns a function that unregisters it. */
  onMessage(handler: (peer: string, message: string | Uint8Array) => void): () => void;
}

/**
 * An in-process network of named endpoints (tests, benches, demos): messages
 * are delivered asynchronously and in order; links can be cut and healed.
 */
export class MemoryNetwork {
  private readonly handlers = new Map<string, Set<(peer: string, message: string | Uint8Array) => void>>();
  private readonly cut = new Set<string>();
  /** Messages delivered so far. */
  delivered = 0;

  private link(a: string, b: string): string {
    return a < b ? `${a}|${b}` : `${b}|${a}`;
  }

  /** The transport of endpoint `id`. */
  endpoint(id: string): ReplicationTransport {
    return {
      send: (peer, message) => this.deliver(id, peer, message),
      onMessage: (handler) => {
        let set = this.handlers.get(id);
        if (!set) this.handlers.set(id, (set = new Set()));
        set.add(handler);
        return () => set.delete(handler);
      },
    };
  }

  /** Delivers `message` from `from` to `to` (also used by tests to inject garbage). */
  deliver(from: string, to: string, message: string | Uint8Array): void {
    if (this.cut.has(this.link(from, to))) return;
    setImmediate(() => {
      if (this.cut.has(this.link(from, to))) return;
      this.delivered += 1;
      for (const h of this.handlers.get(to) ?? []) h(from, message);
    });
  }

  /** Cuts the link between `a` and `b` (messages are lost, as on a real partition). */
  partition(a: string, b: string): void {
    this.cut.add(this.link(a, b));
  }

  /** Restores the link between `a` and `b`. */
  heal(a: string, b: string): void {
    this.cut.delete(this.link(a, b));
  }
}
