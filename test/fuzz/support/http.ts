import { request } from 'node:http';

/** A raw answer: status, headers and body bytes. */
export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * One HTTP/1.1 request on loopback with the path sent as given (fetch would
 * normalise `..` and `%2e%2e` segments away, which hides traversal attempts).
 */
export function rawRequest(port: number, o: { method: string; path: string; headers?: Record<string, string>; body?: Buffer }): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: o.method,
        path: o.path,
        headers: { ...(o.headers ?? {}), ...(o.body ? { 'content-length': String(o.body.length) } : {}) },
        agent: false,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
        res.on('error', reject);
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error(`no answer to ${o.method} ${o.path} in 15 s`)));
    req.on('error', reject);
    req.end(o.body);
  });
}
