/*
 * C reference for bench/search.ts: exact top-k by dot product over a row-major float32
 * matrix of unit vectors (so dot = cosine), one query at a time on one core. It marks
 * the memory-bandwidth floor that the WebAssembly kernel is compared with.
 *
 * Build: cc -O3 -march=native -o scan scan.c
 * Usage: scan MATRIX_FILE N DIMS QUERY_FILE QUERIES K WARMUP
 *   Both files hold native-endian float32 rows. WARMUP untimed queries (cycling
 *   through the first ones) run before the timed ones.
 * Prints one JSON object: {"timesMs":[...],"ids":[[...],...]}, one entry per query,
 * each time covering scoring plus top-k selection (clock_gettime, CLOCK_MONOTONIC).
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* 16 independent sums: GCC turns this fixed inner loop into SIMD lanes without
 * -ffast-math, because no reassociation across the 16 sums is needed. */
#define LANES 16

static float dot(const float *row, const float *query, long dims) {
  float acc[LANES] = {0};
  long j = 0;
  for (; j + LANES <= dims; j += LANES) {
    for (int lane = 0; lane < LANES; lane++) acc[lane] += row[j + lane] * query[j + lane];
  }
  float sum = 0;
  for (; j < dims; j++) sum += row[j] * query[j];
  for (int lane = 0; lane < LANES; lane++) sum += acc[lane];
  return sum;
}

/* Keeps the k best (score, index) pairs sorted best first. Rows arrive in index order,
 * so a row that only ties the current k-th score loses, as in the TypeScript topK. */
static void search(const float *matrix, long n, long dims, const float *query, int k,
                   float *scores, long *best, float *bestScore) {
  for (long i = 0; i < n; i++) scores[i] = dot(matrix + i * dims, query, dims);
  int kept = 0;
  for (long i = 0; i < n; i++) {
    float s = scores[i];
    if (kept == k && s <= bestScore[k - 1]) continue;
    int at = kept < k ? kept++ : k - 1;
    while (at > 0 && bestScore[at - 1] < s) {
      bestScore[at] = bestScore[at - 1];
      best[at] = best[at - 1];
      at--;
    }
    bestScore[at] = s;
    best[at] = i;
  }
}

static float *readFloats(const char *path, size_t count) {
  /* 64-byte alignment, as in WebAssembly memory where rows start on 64-byte bounds. */
  size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
  float *data = aligned_alloc(64, bytes);
  FILE *file = fopen(path, "rb");
  if (data == NULL || file == NULL || fread(data, sizeof(float), count, file) != count) {
    fprintf(stderr, "scan: cannot read %zu floats from %s\n", count, path);
    exit(1);
  }
  fclose(file);
  return data;
}

static double nowMs(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: scan MATRIX_FILE N DIMS QUERY_FILE QUERIES K WARMUP\n");
    return 2;
  }
  long n = atol(argv[2]), dims = atol(argv[3]), queries = atol(argv[5]);
  int k = atoi(argv[6]), warmup = atoi(argv[7]);
  if (n < 1 || dims < 1 || queries < 1 || k < 1 || k > n || warmup < 0) {
    fprintf(stderr, "scan: bad arguments\n");
    return 2;
  }
  float *matrix = readFloats(argv[1], (size_t)(n * dims));
  float *query = readFloats(argv[4], (size_t)(queries * dims));
  float *scores = malloc((size_t)n * sizeof(float));
  float *bestScore = malloc((size_t)k * sizeof(float));
  long *best = malloc((size_t)queries * (size_t)k * sizeof(long));
  double *times = malloc((size_t)queries * sizeof(double));
  if (scores == NULL || bestScore == NULL || best == NULL || times == NULL) return 1;

  for (int w = 0; w < warmup; w++) {
    search(matrix, n, dims, query + (w % queries) * dims, k, scores, best, bestScore);
  }
  for (long q = 0; q < queries; q++) {
    double start = nowMs();
    search(matrix, n, dims, query + q * dims, k, scores, best + q * k, bestScore);
    times[q] = nowMs() - start;
  }

  printf("{\"timesMs\":[");
  for (long q = 0; q < queries; q++) printf("%s%.6f", q ? "," : "", times[q]);
  printf("],\"ids\":[");
  for (long q = 0; q < queries; q++) {
    printf("%s[", q ? "," : "");
    for (int i = 0; i < k; i++) printf("%s%ld", i ? "," : "", best[q * k + i]);
    printf("]");
  }
  printf("]}\n");
  return 0;
}
