/* A stand-in for libnccl.so.2 (tests/train/test_distributed.py, tests/train/test_nccl.py): the symbols csrc/nccl.cpp loads, for one rank. It logs
 * every call to $FAKE_NCCL_LOG, so a test can check the order in which the network starts its reductions, and
 * averages over its single rank (a copy). Emulated and CPU memory are host memory, so it can read the buffers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char internal[128]; } ncclUniqueId;

static void note(const char* fmt, long a, long b, long c) {
  const char* path = getenv("FAKE_NCCL_LOG");
  if (!path) return;
  FILE* f = fopen(path, "a");
  if (!f) return;
  fprintf(f, fmt, a, b, c);
  fclose(f);
}

int ncclGetVersion(int* v) { *v = 22105; return 0; }
int ncclGetUniqueId(ncclUniqueId* id) { memset(id->internal, 7, sizeof id->internal); return 0; }
int ncclCommInitRank(void** comm, int nranks, ncclUniqueId id, int rank) {
  static long next = 1;
  if (nranks != 1 || rank != 0 || id.internal[0] != 7) return 4; /* ncclInvalidArgument */
  *comm = (void*)next;
  note("init %ld %ld %ld\n", next++, nranks, rank);
  return 0;
}
int ncclCommDestroy(void* comm) { return 0; }
int ncclAllReduce(const void* send, void* recv, size_t count, int dtype, int op, void* comm, void* stream) {
  if (dtype != 7 || op != 4) return 4; /* float32, average */
  if (send != recv) memmove(recv, send, count * 4);
  note("allreduce %ld %ld %ld\n", (long)comm, (long)count, 0);
  return 0;
}
int ncclGroupStart(void) { return 0; }
int ncclGroupEnd(void) { return 0; }
const char* ncclGetErrorString(int result) { return "invalid argument (fake NCCL)"; }
