import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import { divide, getPpIndices, groupLayout } from '../../src/parallel/layout.ts';

describe("vLLM's rank layout (initialize_model_parallel's worked examples)", () => {
  it('world 8, TP 2, PP 4', () => {
    const g = groupLayout(8, { tensorParallelSize: 2, pipelineParallelSize: 4 });
    expect(g.tp).toEqual([
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
    ]);
    expect(g.pp).toEqual([
      [0, 2, 4, 6],
      [1, 3, 5, 7],
    ]);
    expect(g.dp).toEqual([[0], [2], [4], [6], [1], [3], [5], [7]]);
    expect(g.ep).toEqual([
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
    ]);
  });

  it('world 8, TP 2, PP 2, DP 2', () => {
    const g = groupLayout(8, { tensorParallelSize: 2, pipelineParallelSize: 2, dataParallelSize: 2 });
    expect(g.tp).toEqual([
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
    ]);
    expect(g.pp).toEqual([
      [0, 2],
      [1, 3],
      [4, 6],
      [5, 7],
    ]);
    expect(g.dp).toEqual([
      [0, 4],
      [2, 6],
      [1, 5],
      [3, 7],
    ]);
    expect(g.ep).toEqual([
      [0, 1, 4, 5],
      [2, 3, 6, 7],
    ]);
  });

  it('world 4, TP 2, PP 2', () => {
    const g = groupLayout(4, { tensorParallelSize: 2, pipelineParallelSize: 2 });
    expect(g.tp).toEqual([
      [0, 1],
      [2, 3],
    ]);
    expect(g.pp).toEqual([
      [0, 2],
      [1, 3],
    ]);
  });

  it('world 8, TP 4, PP 2, DCP 2', () => {
    const g = groupLayout(8, { tensorParallelSize: 4, pipelineParallelSize: 2, decodeContextParallelSize: 2 });
    expect(g.tp).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
    ]);
    expect(g.dcp).toEqual([
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
    ]);
    expect(g.pp).toEqual([
      [0, 4],
      [1, 5],
      [2, 6],
      [3, 7],
    ]);
  });

  it('world 16, DP 2, PP 2, PCP 2, TP 2', () => {
    const g = groupLayout(16, {
      dataParallelSize: 2,
      pipelineParallelSize: 2,
      prefillContextParallelSize: 2,
      tensorParallelSize: 2,
    });
    expect(g.pcp.slice(0, 4)).toEqual([
      [0, 2],
      [1, 3],
      [4, 6],
      [5, 7],
    ]);
    expect(g.pp.slice(0, 5)).toEqual([
      [0, 4],
      [2, 6],
      [1, 5],
      [3, 7],
      [8, 12],
    ]);
    expect(g.dp.slice(0, 5)).toEqual([
      [0, 8],
      [2, 10],
      [4, 12],
      [6, 14],
      [1, 9],
    ]);
    expect(g.ep).toEqual([
      [0, 1, 2, 3, 8, 9, 10, 11],
      [4, 5, 6, 7, 12, 13, 14, 15],
    ]);
  });

  it('world 12, DP 3, PP 2, TP 2', () => {
    const g = groupLayout(12, { dataParallelSize: 3, pipelineParallelSize: 2, tensorParallelSize: 2 });
    expect(g.dp).toEqual([
      [0, 4, 8],
      [2, 6, 10],
      [1, 5, 9],
      [3, 7, 11],
    ]);
    expect(g.ep).toEqual([
      [0, 1, 4, 5, 8, 9],
      [2, 3, 6, 7, 10, 11],
    ]);
  });

  it('every rank is in exactly one group of each kind', () => {
    const g = groupLayout(16, { tensorParallelSize: 2, pipelineParallelSize: 2, dataParallelSize: 2 });
    for (const kind of ['tp', 'pp', 'dp', 'ep', 'pcp', 'dcp'] as const) {
      expect(g[kind].flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 16 }, (_, i) => i));
    }
  });

  it('rejects a world size the axes do not divide, naming the argument', () => {
    expect(() => groupLayout(6, { tensorParallelSize: 4 })).toThrow(InvalidArgumentError);
    expect(() => groupLayout(6, { tensorParallelSize: 4 })).toThrow(/worldSize/);
    expect(() => groupLayout(4, { tensorParallelSize: 0 })).toThrow(/tensorParallelSize/);
  });
});

describe("getPpIndices (vLLM's get_pp_indices)", () => {
  afterEach(() => {
    delete process.env.GPUGROUP_PP_LAYER_PARTITION;
  });

  it.each([
    [
      3,
      2,
      [
        [0, 2],
        [2, 3],
      ],
    ],
    [
      4,
      3,
      [
        [0, 1],
        [1, 3],
        [3, 4],
      ],
    ],
    [
      5,
      3,
      [
        [0, 2],
        [2, 4],
        [4, 5],
      ],
    ],
    [
      2,
      2,
      [
        [0, 1],
        [1, 2],
      ],
    ],
    [
      3,
      3,
      [
        [0, 1],
        [1, 2],
        [2, 3],
      ],
    ],
  ])('%i layers over %i stages', (layers, stages, expected) => {
    expect(Array.from({ length: stages }, (_, r) => getPpIndices(layers, r, stages))).toEqual(expected);
  });

  it('honours GPUGROUP_PP_LAYER_PARTITION', () => {
    process.env.GPUGROUP_PP_LAYER_PARTITION = '1,4,3';
    expect([0, 1, 2].map((r) => getPpIndices(8, r, 3))).toEqual([
      [0, 1],
      [1, 5],
      [5, 8],
    ]);
  });

  it.each([
    ['1,2,', 'Invalid partition string: 1,2,'],
    ['1,a', 'Invalid partition string: 1,a'],
    ['4,4', 'len(partitions)=2 does not match pp_size=3.'],
    ['1,1,1', 'sum(partitions)=3 does not match num_hidden_layers=8.'],
  ])('rejects partition %s', (value, message) => {
    process.env.GPUGROUP_PP_LAYER_PARTITION = value;
    expect(() => getPpIndices(8, 0, 3)).toThrow(message);
  });

  it("divide checks divisibility with vLLM's message", () => {
    expect(divide(12, 4)).toBe(3);
    expect(() => divide(10, 4)).toThrow('10 is not divisible by 4');
  });
});
