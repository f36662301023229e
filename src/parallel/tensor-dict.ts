/**
 * Splitting a tensor dict into metadata and tensors (parallel_state.py: _split_tensor_dict). Keys keep
 * their order; tensors become `{ __tensor: [deviceType, dtype, shape] }` entries in the
 * metadata (the receiver allocates on its own current device of that type, as in vLLM);
 * every other value travels inside the metadata unchanged. Nested values are not
 * searched for tensors, as in vLLM.
 */
import { InvalidArgumentError } from '../errors.ts';
import { Tensor, type DType } from '../tensor/index.ts';

/** A dict as user code passes it: tensors and plain values, in key order. */
export type TensorDict = Record<string, unknown>;

/** What the metadata holds in place of a tensor. */
export interface TensorMetadata {
  __tensor: ['cpu' | 'cuda', DType, number[]];
}

/** One metadata entry: the key and either the plain value or the tensor's metadata. */
export type MetadataEntry = [key: string, value: unknown];

/** Splits `dict` into its metadata list and its tensors, both in key order. */
export function splitTensorDict(dict: TensorDict): { metadata: MetadataEntry[]; tensors: Tensor[] } {
  if (dict === null || typeof dict !== 'object' || Array.isArray(dict) || dict instanceof Tensor) {
    throw new InvalidArgumentError(
      'tensorDict',
      `Expecting a dictionary, got ${dict === null ? 'null' : Array.isArray(dict) ? 'array' : typeof dict}`,
    );
  }
  const metadata: MetadataEntry[] = [];
  const tensors: Tensor[] = [];
  for (const [key, value] of Object.entries(dict)) {
    if (value instanceof Tensor) {
      const meta: TensorMetadata = {
        __tensor: [value.device === 'cpu' ? 'cpu' : 'cuda', value.dtype, [...value.shape]],
      };
      metadata.push([key, meta]);
      tensors.push(value);
    } else {
      metadata.push([key, value]);
    }
  }
  return { metadata, tensors };
}

/** True for a metadata value that stands for a tensor. */
export function isTensorMetadata(value: unknown): value is TensorMetadata {
  return (
    typeof value === 'object' &&
    value !== null &&
    Array.isArray((value as TensorMetadata).__tensor) &&
    Object.keys(value).length === 1
  );
}
