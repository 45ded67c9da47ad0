import { expect } from 'chai';
import { MessageDispatcher, type DispatchTargets } from '../../../hospital-agent/engine/dispatch.ts';
import { encodeWire } from '../../../hospital-agent/engine/wire.ts';
import { encodeClaimWire } from '../../../hospital-agent/claims/index.ts';
import type { RelayMessage } from '../../../relay/protocol/index.ts';

const msg = (body: Buffer): RelayMessage => ({ from: 'alpha', body }) as unknown as RelayMessage;
const ID = '0b8f5a4e-6c1d-4f5e-9a9b-2f6f1f0e8d11';

describe('MessageDispatcher modules', function () {
  function setup() {
    const seen: string[] = [];
    const warnings: string[] = [];
    const errors: string[] = [];
    const targets = {
      engine: { onReceipt: async () => undefined, onReceiptNone: (_f: string, id: string) => void seen.push(`engine:${id}`) },
      receiver: { onReceiptGet: async () => undefined },
      requests: { onRequest: async () => undefined, onStatus: async () => undefined },
      peers: { onMessage: async () => undefined },
      ledger: () => undefined,
      logger: {
        info: () => undefined,
        warn: (_o: object, m?: string) => void warnings.push(m ?? ''),
        error: (_o: object, m?: string) => void errors.push(m ?? ''),
      },
      modules: [
        {
          kinds: ['claim.get', 'claim.submit'],
          handle: async (from: string, value: unknown) => {
            seen.push(`claims:${from}:${(value as { t: string }).t}`);
            if ((value as { id?: string }).id === 'boom') throw new Error('handler failed');
          },
        },
      ],
    } as unknown as DispatchTargets;
    return { d: new MessageDispatcher(targets), seen, warnings, errors };
  }

  it("hands a module's kinds to the module and every other kind to the core handlers", async () => {
    const { d, seen } = setup();
    d.dispatch(msg(encodeClaimWire({ t: 'claim.get', id: ID })));
    d.dispatch(msg(encodeWire({ t: 'receipt.none', id: 'exchange-0001' })));
    await new Promise((r) => setImmediate(r));
    expect(seen).to.deep.equal(['claims:alpha:claim.get', 'engine:exchange-0001']);
  });

  it('drops garbage and unknown kinds with a warning, and logs a failing module handler without throwing', async () => {
    const { d, seen, warnings, errors } = setup();
    d.dispatch(msg(Buffer.concat([Buffer.of(0x4a), Buffer.from('{not json')])));
    d.dispatch(msg(Buffer.concat([Buffer.of(0x4a), Buffer.from('{"t":"claim.nope"}')])));
    d.dispatch(msg(Buffer.concat([Buffer.of(0x4a), Buffer.from('{"t":"claim.get","id":"boom"}')])));
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).to.deep.equal(['claims:alpha:claim.get']);
    expect(warnings).to.have.length(2);
    expect(errors).to.deep.equal(['an agent message could not be handled']);
  });
});
