import { describe, expect, it } from 'vitest';
import { FieldCursor, FrameReader, Op, encodeFrame, encodeHeaderForValue, isOp } from '../../src/store/protocol.ts';

interface Seen {
  frames: { code: number; id: number; fields: string[] }[];
  oversize: { code: number; id: number; length: number }[];
  fatal: string[];
}

function reader(maxFrameBytes = 1 << 20): { r: FrameReader; seen: Seen } {
  const seen: Seen = { frames: [], oversize: [], fatal: [] };
  const cursor = new FieldCursor();
  const r = new FrameReader(maxFrameBytes, isOp, {
    frame: (code, id, buf, start, end) => {
      cursor.reset(buf, start, end);
      const fields: string[] = [];
      while (cursor.next()) fields.push(buf.toString('utf8', cursor.start, cursor.end));
      seen.frames.push({ code, id, fields });
    },
    oversize: (code, id, length) => seen.oversize.push({ code, id, length }),
    fatal: (reason) => seen.fatal.push(reason),
  });
  return { r, seen };
}

describe('frame protocol', () => {
  it('encodes string and byte fields and decodes them back, whole or split at every byte', () => {
    const a = encodeFrame(Op.set, 7, ['kéy', new Uint8Array([0x76, 0x61, 0x6c])])!;
    const b = encodeFrame(Op.get, 0xffff_fffe, ['k2'])!;
    const c = encodeFrame(Op.numKeys, 9, [])!;
    expect(a.readUInt32LE(0)).toBe(a.length - 4);
    const stream = Buffer.concat([a, b, c]);
    const want = [
      { code: Op.set, id: 7, fields: ['kéy', 'val'] },
      { code: Op.get, id: 0xffff_fffe, fields: ['k2'] },
      { code: Op.numKeys, id: 9, fields: [] },
    ];
    for (let split = 0; split <= stream.length; split++) {
      const { r, seen } = reader();
      r.push(stream.subarray(0, split));
      r.push(stream.subarray(split));
      expect(seen.frames).toEqual(want);
    }
    const { r, seen } = reader();
    for (const byte of stream) r.push(Buffer.from([byte]));
    expect(seen.frames).toEqual(want);
    expect(seen.fatal).toEqual([]);
  });

  it('skips an oversize frame as it arrives and goes on with the next one', () => {
    const { r, seen } = reader(64);
    const big = encodeFrame(Op.set, 3, ['k', Buffer.alloc(200, 1)])!;
    const next = encodeFrame(Op.get, 4, ['k'])!;
    r.push(big.subarray(0, 50));
    expect(seen.oversize).toEqual([{ code: Op.set, id: 3, length: big.length - 4 }]);
    r.push(big.subarray(50, 120));
    r.push(Buffer.concat([big.subarray(120), next]));
    expect(seen.frames).toEqual([{ code: Op.get, id: 4, fields: ['k'] }]);
    expect(seen.fatal).toEqual([]);
  });

  it('stops at a length below the header or an unknown code', () => {
    const short = reader();
    short.r.push(Buffer.from([2, 0, 0, 0, 1, 0, 0, 0, 0, 0]));
    expect(short.seen.fatal).toEqual(['frame length 2 is below the header']);
    const unknown = reader();
    unknown.r.push(Buffer.concat([encodeFrame(99, 1, [])!, encodeFrame(Op.get, 2, ['k'])!]));
    expect(unknown.seen.fatal).toEqual(['unknown code 99']);
    expect(unknown.seen.frames).toEqual([]);
  });

  it('a field that overruns its frame is an error inside the frame, not of the stream', () => {
    const body = Buffer.from([Op.get, 5, 0, 0, 0, 200, 0, 0, 0, 1, 2]);
    const frame = Buffer.concat([Buffer.from([body.length, 0, 0, 0]), body]);
    const cursor = new FieldCursor();
    let err: unknown;
    const r = new FrameReader(1024, isOp, {
      frame: (_code, _id, buf, start, end) => {
        cursor.reset(buf, start, end);
        try {
          cursor.next();
        } catch (e) {
          err = e;
        }
      },
      oversize: () => undefined,
      fatal: () => undefined,
    });
    r.push(frame);
    expect(String(err)).toContain('field of 200 bytes overruns its frame');
  });

  it('a value header describes a frame whose value follows separately', () => {
    const value = Buffer.from('payload');
    const { seen } = (() => {
      const x = reader();
      x.r.push(Buffer.concat([encodeHeaderForValue(Op.set, 11, value.length), value]));
      return x;
    })();
    expect(seen.frames).toEqual([{ code: Op.set, id: 11, fields: ['payload'] }]);
  });
});
