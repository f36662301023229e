/*
 * A stand-in for libcudart, libcuda and libnccl with every function gpugroup binds
 * (native/cuda.ts, native/nccl.ts), for measuring gpugroup's own host overhead on a
 * machine without a GPU: device memory is host memory, copies and fills are memcpy and
 * memset, streams and events are always complete, collectives move nothing except on a
 * one-rank communicator, where they copy their input to their output as NCCL does. Figures
 * measured on it are JavaScript and binding costs only; they say nothing about a GPU.
 * Built by build.sh; never loaded unless GPUGROUP_*_SO_PATH points at it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

typedef struct { char internal[128]; } ncclUniqueId;
typedef struct { char reserved[64]; } cudaIpcMemHandle_t;
typedef struct { int nranks, rank, device, dead; } Comm;

static __thread int current_device = 0;
/* Test hooks (test/stub-native.ts): while `stub_busy` is set, streams and events report
 * cudaErrorNotReady (work in flight); after each event record, the next `stub_event_lag`
 * event queries report it too (work that ends a moment later); `stub_async_error` is what
 * ncclCommGetAsyncError reports. */
static int stub_busy = 0;
static int stub_event_lag = 0;
static int stub_lag_left = 0;
static int stub_async_error = 0;
void gpugroupStubSetBusy(int busy) { stub_busy = busy; }
void gpugroupStubSetEventLag(int queries) { stub_event_lag = queries; stub_lag_left = 0; }
void gpugroupStubSetAsyncError(int result) { stub_async_error = result; }
static uint64_t next_handle = 0x1000;
static void put_ptr(void *out, void *value) { memcpy(out, &value, sizeof value); }
static void put_handle(void *out) { uint64_t h = __atomic_add_fetch(&next_handle, 16, __ATOMIC_RELAXED); memcpy(out, &h, sizeof h); }

const char *cudaGetErrorName(int e) { (void)e; return "cudaErrorStub"; }
const char *cudaGetErrorString(int e) { (void)e; return "stub library"; }
int cudaRuntimeGetVersion(int *v) { *v = 13000; return 0; }
int cudaDriverGetVersion(int *v) { *v = 13000; return 0; }
int cudaGetDeviceCount(int *n) { const char *s = getenv("GPUGROUP_STUB_GPUS"); *n = s ? atoi(s) : 4; return 0; }
int cudaGetDevice(int *d) { *d = current_device; return 0; }
int cudaSetDevice(int d) { current_device = d; return 0; }
int cudaDeviceSynchronize(void) { return 0; }
int cudaDeviceGetPCIBusId(char *id, int len, int d) { snprintf(id, len, "0000:%02x:00.0", d + 1); return 0; }
int cudaDeviceCanAccessPeer(int *can, int a, int b) { (void)a; (void)b; *can = 1; return 0; }
int cudaMemGetInfo(size_t *f, size_t *t) { *f = (size_t)100 << 30; *t = (size_t)140 << 30; return 0; }
int cudaMalloc(void *out, size_t n) { put_ptr(out, malloc(n ? n : 1)); return 0; }
int cudaFree(void *p) { free(p); return 0; }
int cudaMallocAsync(void *out, size_t n, void *s) { (void)s; put_ptr(out, malloc(n ? n : 1)); return 0; }
int cudaFreeAsync(void *p, void *s) { (void)s; free(p); return 0; }
int cudaMallocHost(void *out, size_t n) { put_ptr(out, malloc(n ? n : 1)); return 0; }
int cudaFreeHost(void *p) { free(p); return 0; }
int cudaDeviceGetDefaultMemPool(void *out, int d) { (void)d; put_handle(out); return 0; }
int cudaMemPoolSetAttribute(void *pool, int attr, void *v) { (void)pool; (void)attr; (void)v; return 0; }
int cudaMemcpy(void *dst, const void *src, size_t n, int kind) { (void)kind; memmove(dst, src, n); return 0; }
int cudaMemcpyAsync(void *dst, const void *src, size_t n, int kind, void *s) { (void)kind; (void)s; memmove(dst, src, n); return 0; }
int cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height, int kind, void *s) {
  (void)kind; (void)s;
  for (size_t r = 0; r < height; r++) memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
  return 0;
}
int cudaMemsetAsync(void *p, int v, size_t n, void *s) { (void)s; memset(p, v, n); return 0; }
int cudaStreamCreateWithFlags(void *out, unsigned f) { (void)f; put_handle(out); return 0; }
int cudaStreamQuery(void *s) { (void)s; return stub_busy ? 600 : 0; }
int cudaStreamSynchronize(void *s) { (void)s; return 0; }
int cudaStreamDestroy(void *s) { (void)s; return 0; }
int cudaStreamWaitEvent(void *s, void *e, unsigned f) { (void)s; (void)e; (void)f; return 0; }
int cudaEventCreateWithFlags(void *out, unsigned f) { (void)f; put_handle(out); return 0; }
int cudaEventRecord(void *e, void *s) { (void)e; (void)s; stub_lag_left = stub_event_lag; return 0; }
int cudaEventQuery(void *e) {
  (void)e;
  if (stub_lag_left > 0) { stub_lag_left--; return 600; }
  return stub_busy ? 600 : 0;
}
int cudaEventSynchronize(void *e) { (void)e; return 0; }
int cudaEventElapsedTime(float *ms, void *a, void *b) { (void)a; (void)b; *ms = 0.001f; return 0; }
int cudaEventDestroy(void *e) { (void)e; return 0; }
int cudaStreamBeginCapture(void *s, int m) { (void)s; (void)m; return 0; }
int cudaStreamEndCapture(void *s, void *out) { (void)s; put_handle(out); return 0; }
int cudaStreamIsCapturing(void *s, int *st) { (void)s; *st = 0; return 0; }
int cudaThreadExchangeStreamCaptureMode(int *m) { (void)m; return 0; }
int cudaGraphInstantiate(void *out, void *g, unsigned long long f) { (void)g; (void)f; put_handle(out); return 0; }
int cudaGraphLaunch(void *e, void *s) { (void)e; (void)s; return 0; }
int cudaGraphExecDestroy(void *e) { (void)e; return 0; }
int cudaGraphDestroy(void *g) { (void)g; return 0; }
int cudaIpcGetMemHandle(void *out, void *p) { memset(out, 0, sizeof(cudaIpcMemHandle_t)); memcpy(out, &p, sizeof p); return 0; }
int cudaIpcOpenMemHandle(void *out, cudaIpcMemHandle_t h, unsigned f) { (void)f; void *p; memcpy(&p, h.reserved, sizeof p); put_ptr(out, p); return 0; }
int cudaIpcCloseMemHandle(void *p) { (void)p; return 0; }
int cuMemsetD32Async(uint64_t dst, uint32_t v, size_t n, void *s) {
  (void)s; uint32_t *p = (uint32_t *)(uintptr_t)dst;
  for (size_t i = 0; i < n; i++) p[i] = v;
  return 0;
}

/* Every pointer is its own allocation here: the base is the pointer itself. */
int cuMemGetAddressRange_v2(uint64_t *base, size_t *size, uint64_t p) { *base = p; *size = 0; return 0; }
int cuInit(unsigned f) { (void)f; return 0; }
int cuDeviceGet(int *dev, int ordinal) { *dev = ordinal; return 0; }
int cuDeviceGetName(char *name, int len, int dev) { snprintf(name, len, "gpugroup stub GPU %d", dev); return 0; }

const char *ncclGetErrorString(int r) { (void)r; return "stub library"; }
const char *ncclGetLastError(void *c) { (void)c; return ""; }
int ncclGetVersion(int *v) { *v = 22809; return 0; }
int ncclGetUniqueId(ncclUniqueId *id) { memset(id, 7, sizeof *id); return 0; }
/* Communicators made by an init (not a split), for tests: gpugroupStubInits(). */
static int inits = 0;
int gpugroupStubInits(void) { return __atomic_load_n(&inits, __ATOMIC_RELAXED); }
static int init(void *out, int nranks, int rank) {
  Comm *c = malloc(sizeof *c); c->nranks = nranks; c->rank = rank; c->device = current_device; c->dead = 0;
  put_ptr(out, c); return 0;
}
int ncclCommInitRank(void *out, int nranks, ncclUniqueId id, int rank) { (void)id; __atomic_add_fetch(&inits, 1, __ATOMIC_RELAXED); return init(out, nranks, rank); }
int ncclCommInitRankConfig(void *out, int nranks, ncclUniqueId id, int rank, void *cfg) { (void)id; (void)cfg; __atomic_add_fetch(&inits, 1, __ATOMIC_RELAXED); return init(out, nranks, rank); }
/* A communicator after ncclCommDestroy or ncclCommAbort is never freed here, so that a
 * later use of its handle (NCCL: undefined behaviour, often a crash) is caught: every call
 * on it, a second abort or a split from it answer ncclInvalidArgument (4), as does a NULL comm. */
#define LIVE(c) do { if (!(c) || ((Comm *)(c))->dead) return 4; } while (0)
int ncclCommSplit(void *comm, int color, int key, void *out, void *cfg) {
  (void)cfg; Comm *c = comm; LIVE(c);
  if (color == -1) { put_ptr(out, NULL); return 0; } /* NCCL_SPLIT_NOCOLOR */
  return init(out, c->nranks, key);
}
int ncclCommFinalize(void *c) { LIVE(c); return 0; }
int ncclCommDestroy(void *c) { LIVE(c); ((Comm *)c)->dead = 1; return 0; }
int ncclCommAbort(void *c) { LIVE(c); ((Comm *)c)->dead = 1; return 0; }
int ncclCommGetAsyncError(void *c, int *e) { LIVE(c); *e = stub_async_error; return 0; }
int ncclCommCount(void *c, int *n) { LIVE(c); *n = ((Comm *)c)->nranks; return 0; }
int ncclCommCuDevice(void *c, int *d) { LIVE(c); *d = ((Comm *)c)->device; return 0; }
int ncclCommUserRank(void *c, int *r) { LIVE(c); *r = ((Comm *)c)->rank; return 0; }
/* Bytes per element of each ncclDataType_t. */
static size_t type_bytes(int t) { static const size_t b[] = {1, 1, 4, 4, 8, 8, 2, 4, 8, 2, 1, 1}; return t >= 0 && t < 12 ? b[t] : 1; }
/* One rank: the result is the input (sum, max, ... of one value; avg of one value). */
static void one_rank_copy(const void *s, void *r, size_t n, int t, void *c) {
  if (((Comm *)c)->nranks == 1 && s && r && s != r) memmove(r, s, n * type_bytes(t));
}
int ncclAllReduce(const void *s, void *r, size_t n, int t, int op, void *c, void *st) { LIVE(c); (void)op; (void)st; one_rank_copy(s, r, n, t, c); return 0; }
int ncclReduce(const void *s, void *r, size_t n, int t, int op, int root, void *c, void *st) { LIVE(c); (void)op; (void)root; (void)st; one_rank_copy(s, r, n, t, c); return 0; }
int ncclAllGather(const void *s, void *r, size_t n, int t, void *c, void *st) { LIVE(c); (void)st; one_rank_copy(s, r, n, t, c); return 0; }
int ncclReduceScatter(const void *s, void *r, size_t n, int t, int op, void *c, void *st) { LIVE(c); (void)op; (void)st; one_rank_copy(s, r, n, t, c); return 0; }
int ncclBroadcast(const void *s, void *r, size_t n, int t, int root, void *c, void *st) { LIVE(c); (void)root; (void)st; one_rank_copy(s, r, n, t, c); return 0; }
int ncclSend(const void *s, size_t n, int t, int peer, void *c, void *st) { LIVE(c); (void)s; (void)n; (void)t; (void)peer; (void)c; (void)st; return 0; }
int ncclRecv(void *r, size_t n, int t, int peer, void *c, void *st) { LIVE(c); (void)r; (void)n; (void)t; (void)peer; (void)c; (void)st; return 0; }
int ncclGroupStart(void) { return 0; }
int ncclGroupEnd(void) { return 0; }
int ncclCommWindowRegister(void *c, void *b, size_t n, void *out, int f) { LIVE(c); (void)c; (void)b; (void)n; (void)f; put_handle(out); return 0; }
int ncclCommWindowDeregister(void *c, void *w) { LIVE(c); (void)c; (void)w; return 0; }
int cuMemcpyBatchAsync_v2(uint64_t *dsts, uint64_t *srcs, size_t *sizes, size_t count, void *attrs, size_t *idx, size_t n, void *s) {
  (void)attrs; (void)idx; (void)n; (void)s;
  for (size_t i = 0; i < count; i++) memmove((void *)(uintptr_t)dsts[i], (const void *)(uintptr_t)srcs[i], sizes[i]);
  return 0;
}
