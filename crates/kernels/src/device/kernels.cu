// The device ops' CUDA kernels (crates/kernels/src/device/mod.rs holds each op's CPU twin, the
// same arithmetic in the same order; cuda.rs launches these). Compiled to PTX by build.rs.
//
// Rounding: every f32 and f64 operation goes through the round-to-nearest intrinsics, so that
// nvcc contracts nothing into fused multiply-adds and each result is rounded as the CPU twin
// rounds it. Reductions sum in a fixed order (fixed chunks, then the chunks in order), so the
// same device gives the same bits twice. expf / logf (the loss) are the one exception: they
// are not correctly rounded, so the loss and its gradient match the CPU to rounding only.

#include <stdint.h>

#define FMUL(a, b) __fmul_rn((a), (b))
#define FADD(a, b) __fadd_rn((a), (b))
#define FSUB(a, b) __fsub_rn((a), (b))
#define FDIV(a, b) __fdiv_rn((a), (b))
#define FSQRT(a) __fsqrt_rn(a)
#define DADD(a, b) __dadd_rn((a), (b))
#define DSUB(a, b) __dsub_rn((a), (b))
#define DMUL(a, b) __dmul_rn((a), (b))
#define DDIV(a, b) __ddiv_rn((a), (b))

// Elements per partial sum of the two-stage reductions (device::CHUNK).
#define CHUNK 1024ULL

typedef unsigned long long u64;
typedef unsigned int u32;

__device__ __forceinline__ u64 global_id() {
    return (u64)blockIdx.x * blockDim.x + threadIdx.x;
}

// ----- ChaCha8 (device::chacha) ------------------------------------------------------------

__device__ __forceinline__ u32 rotl(u32 v, int n) { return (v << n) | (v >> (32 - n)); }

#define QR(a, b, c, d)                                                                            \
    x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 16);                                                  \
    x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 12);                                                  \
    x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 8);                                                   \
    x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 7);

// The 16 words of ChaCha8 block `counter` of stream `stream` under `key`.
__device__ void chacha8_block(const u32 key[8], u64 stream, u64 counter, u32 out[16]) {
    u32 s[16] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u,
                 key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
                 (u32)counter, (u32)(counter >> 32), (u32)stream, (u32)(stream >> 32)};
    u32 x[16];
    for (int i = 0; i < 16; i++) x[i] = s[i];
    for (int r = 0; r < 4; r++) {
        QR(0, 4, 8, 12) QR(1, 5, 9, 13) QR(2, 6, 10, 14) QR(3, 7, 11, 15)
        QR(0, 5, 10, 15) QR(1, 6, 11, 12) QR(2, 7, 8, 13) QR(3, 4, 9, 14)
    }
    for (int i = 0; i < 16; i++) out[i] = x[i] + s[i];
}

// One member's dropout: entry i (0 <= i < n) is word i of the stretch that starts at word
// `offset0` of block `first_block`; kept (times `scale`) iff the word is below `threshold`.
// Entry i is read from x and written to y at `strided(i)` on one side (gather: read strided,
// write i; otherwise read i, write strided), with strided(i) = (i / lb) * lrow + off + i % lb
// (plain dropout: lb = lrow = n, off = 0). `base` is added to i first (the member's block).
// Each thread draws one block and handles its up-to-16 entries.
extern "C" __global__ void fb_dropout(const float *x, float *y, u32 k0, u32 k1, u32 k2, u32 k3,
                                      u32 k4, u32 k5, u32 k6, u32 k7, u64 stream,
                                      u64 first_block, u32 offset0, u64 n, u64 threshold,
                                      float scale, u64 base, u64 lb, u64 lrow, u64 off,
                                      int gather) {
    u64 t = global_id();
    u64 first = t * 16;
    if (first >= n + offset0) return;
    u32 key[8] = {k0, k1, k2, k3, k4, k5, k6, k7};
    u32 words[16];
    chacha8_block(key, stream, first_block + t, words);
    for (int j = 0; j < 16; j++) {
        u64 p = first + j;
        if (p < offset0) continue;
        u64 i = p - offset0;
        if (i >= n) break;
        float m = ((u64)words[j] < threshold) ? scale : 0.0f;
        u64 f = base + i;
        u64 strided = (f / lb) * lrow + off + f % lb;
        if (gather) {
            y[f] = FMUL(x[strided], m);
        } else {
            y[strided] = FMUL(x[f], m);
        }
    }
}

// ----- Copies -------------------------------------------------------------------------------

// dst[r * dst_stride + dst_off + c] = src[r * src_stride + src_off + c] for r < rows, c < width:
// the channel concatenation (scatter into the wider rows) and its gradient (gather).
extern "C" __global__ void fb_copy_rows(const float *src, float *dst, u64 rows, u64 width,
                                        u64 src_stride, u64 src_off, u64 dst_stride,
                                        u64 dst_off) {
    u64 i = global_id();
    if (i >= rows * width) return;
    u64 r = i / width, c = i % width;
    dst[r * dst_stride + dst_off + c] = src[r * src_stride + src_off + c];
}

// ----- BatchNorm (device::batch_norm) ------------------------------------------------------

// The flat index of element j of virtual channel vc of a (members·b, c, s) tensor.
__device__ __forceinline__ u64 bn_index(u64 vc, u64 j, u64 b, u64 c, u64 s) {
    u64 g = vc / c, ch = vc % c;
    u64 n = g * b + j / s;
    return (n * c + ch) * s + j % s;
}

__device__ __forceinline__ u64 bn_channel(u64 i, u64 b, u64 c, u64 s) {
    u64 n = i / (c * s), ch = (i / s) % c;
    return (n / b) * c + ch;
}

// (inv, scale, shift) of device::affine.
__device__ __forceinline__ void bn_affine(float gamma, float beta, float mean, float var,
                                          float eps, float *inv, float *scale, float *shift) {
    *inv = FDIV(1.0f, FSQRT(FADD(var, eps)));
    *scale = FMUL(gamma, *inv);
    *shift = FSUB(beta, FMUL(mean, *scale));
}

// Chunk partials of (Σ d, Σ d²), d = x − x[first element of the channel], per (vc, chunk).
extern "C" __global__ void fb_bn_stats_partial(const float *x, double *part, u64 vcs,
                                               u64 chunks, u64 b, u64 c, u64 s) {
    u64 id = global_id();
    if (id >= vcs * chunks) return;
    u64 vc = id / chunks, k = id % chunks, n = b * s;
    double shift = (double)x[bn_index(vc, 0, b, c, s)];
    double s1 = 0.0, s2 = 0.0;
    u64 end = (k + 1) * CHUNK < n ? (k + 1) * CHUNK : n;
    for (u64 j = k * CHUNK; j < end; j++) {
        double d = DSUB((double)x[bn_index(vc, j, b, c, s)], shift);
        s1 = DADD(s1, d);
        s2 = DADD(s2, DMUL(d, d));
    }
    part[2 * id] = s1;
    part[2 * id + 1] = s2;
}

// stats (2, vcs): mean and biased variance from the partials, chunks summed in order.
extern "C" __global__ void fb_bn_stats_final(const float *x, const double *part, float *stats,
                                             u64 vcs, u64 chunks, u64 b, u64 c, u64 s) {
    u64 vc = global_id();
    if (vc >= vcs) return;
    double s1 = 0.0, s2 = 0.0;
    for (u64 k = 0; k < chunks; k++) {
        s1 = DADD(s1, part[2 * (vc * chunks + k)]);
        s2 = DADD(s2, part[2 * (vc * chunks + k) + 1]);
    }
    double n = (double)(b * s);
    double m1 = DDIV(s1, n);
    double var = DSUB(DDIV(s2, n), DMUL(m1, m1));
    if (!(var >= 0.0)) var = var < 0.0 ? 0.0 : var;
    stats[vc] = (float)DADD((double)x[bn_index(vc, 0, b, c, s)], m1);
    stats[vcs + vc] = (float)var;
}

extern "C" __global__ void fb_bn_apply(const float *x, const float *gamma, const float *beta,
                                       const float *stats, float *y, u64 total, u64 vcs, u64 b,
                                       u64 c, u64 s, float eps, int relu) {
    u64 i = global_id();
    if (i >= total) return;
    u64 vc = bn_channel(i, b, c, s);
    float inv, scale, shift;
    bn_affine(gamma[vc], beta[vc], stats[vc], stats[vcs + vc], eps, &inv, &scale, &shift);
    float v = FADD(FMUL(x[i], scale), shift);
    y[i] = (relu && v < 0.0f) ? 0.0f : v;
}

// dy through the fused ReLU: kept where the pre-activation (recomputed) is >= 0.
__device__ __forceinline__ float bn_masked(int relu, float x, float dy, float scale,
                                           float shift) {
    return (relu && FADD(FMUL(x, scale), shift) < 0.0f) ? 0.0f : dy;
}

extern "C" __global__ void fb_bn_bwd_partial(const float *x, const float *dy, const float *gamma,
                                             const float *beta, const float *stats, double *part,
                                             u64 vcs, u64 chunks, u64 b, u64 c, u64 s, float eps,
                                             int relu) {
    u64 id = global_id();
    if (id >= vcs * chunks) return;
    u64 vc = id / chunks, k = id % chunks, n = b * s;
    float mean = stats[vc];
    float inv, scale, shift;
    bn_affine(gamma[vc], beta[vc], mean, stats[vcs + vc], eps, &inv, &scale, &shift);
    double t1 = 0.0, t2 = 0.0;
    u64 end = (k + 1) * CHUNK < n ? (k + 1) * CHUNK : n;
    for (u64 j = k * CHUNK; j < end; j++) {
        u64 i = bn_index(vc, j, b, c, s);
        double g = (double)bn_masked(relu, x[i], dy[i], scale, shift);
        t1 = DADD(t1, g);
        t2 = DADD(t2, DMUL(g, DSUB((double)x[i], (double)mean)));
    }
    part[2 * id] = t1;
    part[2 * id + 1] = t2;
}

// sums (2·vcs): dgamma, then dbeta.
extern "C" __global__ void fb_bn_bwd_final(const double *part, const float *gamma,
                                           const float *beta, const float *stats, float *sums,
                                           u64 vcs, u64 chunks, float eps) {
    u64 vc = global_id();
    if (vc >= vcs) return;
    double t1 = 0.0, t2 = 0.0;
    for (u64 k = 0; k < chunks; k++) {
        t1 = DADD(t1, part[2 * (vc * chunks + k)]);
        t2 = DADD(t2, part[2 * (vc * chunks + k) + 1]);
    }
    float inv, scale, shift;
    bn_affine(gamma[vc], beta[vc], stats[vc], stats[vcs + vc], eps, &inv, &scale, &shift);
    sums[vc] = (float)DMUL(t2, (double)inv);
    sums[vcs + vc] = (float)t1;
}

extern "C" __global__ void fb_bn_bwd_dx(const float *x, const float *dy, const float *sums,
                                        const float *gamma, const float *beta,
                                        const float *stats, float *dx, u64 total, u64 vcs,
                                        u64 b, u64 c, u64 s, float n, float eps, int relu,
                                        int train) {
    u64 i = global_id();
    if (i >= total) return;
    u64 vc = bn_channel(i, b, c, s);
    float mean = stats[vc];
    float inv, scale, shift;
    bn_affine(gamma[vc], beta[vc], mean, stats[vcs + vc], eps, &inv, &scale, &shift);
    float g = bn_masked(relu, x[i], dy[i], scale, shift);
    if (train) {
        float xhat = FMUL(FSUB(x[i], mean), inv);
        float t = FSUB(FSUB(g, FDIV(sums[vcs + vc], n)), FMUL(xhat, FDIV(sums[vc], n)));
        dx[i] = FMUL(scale, t);
    } else {
        dx[i] = FMUL(scale, g);
    }
}

// Every pending running-statistics update at once (device::flush_running): entry e (blockIdx.y)
// updates running mean ptrs[3e] and variance ptrs[3e+1] from stats ptrs[3e+2] ((2, vcs[e])).
extern "C" __global__ void fb_bn_running(const u64 *ptrs, const u64 *vcs, const float *factors,
                                         u64 entries) {
    u64 e = blockIdx.y;
    u64 ch = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= entries || ch >= vcs[e]) return;
    float *rm = (float *)ptrs[3 * e], *rv = (float *)ptrs[3 * e + 1];
    const float *stats = (const float *)ptrs[3 * e + 2];
    float keep = factors[3 * e], take_mean = factors[3 * e + 1], take_var = factors[3 * e + 2];
    rm[ch] = FADD(FMUL(rm[ch], keep), FMUL(stats[ch], take_mean));
    rv[ch] = FADD(FMUL(rv[ch], keep), FMUL(stats[vcs[e] + ch], take_var));
}

// ----- Bias and ReLU, channel sums ----------------------------------------------------------

// Forward: y = relu(x + bias[c]); backward (dy given): dx = dy where x + bias >= 0, else 0.
extern "C" __global__ void fb_bias_relu(const float *x, const float *bias, const float *dy,
                                        float *out, u64 total, u64 c, u64 s) {
    u64 i = global_id();
    if (i >= total) return;
    float v = FADD(x[i], bias[(i / s) % c]);
    if (dy) {
        out[i] = v < 0.0f ? 0.0f : dy[i];
    } else {
        out[i] = v < 0.0f ? 0.0f : v;
    }
}

extern "C" __global__ void fb_channel_sums_partial(const float *x, double *part, u64 c,
                                                   u64 chunks, u64 b, u64 s) {
    u64 id = global_id();
    if (id >= c * chunks) return;
    u64 vc = id / chunks, k = id % chunks, n = b * s;
    double t = 0.0;
    u64 end = (k + 1) * CHUNK < n ? (k + 1) * CHUNK : n;
    for (u64 j = k * CHUNK; j < end; j++) t = DADD(t, (double)x[bn_index(vc, j, b, c, s)]);
    part[id] = t;
}

extern "C" __global__ void fb_channel_sums_final(const double *part, float *out, u64 c,
                                                 u64 chunks) {
    u64 vc = global_id();
    if (vc >= c) return;
    double t = 0.0;
    for (u64 k = 0; k < chunks; k++) t = DADD(t, part[vc * chunks + k]);
    out[vc] = (float)t;
}

// ----- Loss (device::cross_entropy) ---------------------------------------------------------

__device__ float log_sum_exp(const float *row, u64 k) {
    float m = __int_as_float(0xff800000); // -inf
    for (u64 j = 0; j < k; j++) m = row[j] > m ? row[j] : m;
    float s = 0.0f;
    for (u64 j = 0; j < k; j++) s = FADD(s, expf(FSUB(row[j], m)));
    return FADD(m, logf(s));
}

// Each row's loss into rows[r] (classes: target u32 labels; soft: f32 distributions).
extern "C" __global__ void fb_ce_rows(const float *x, const void *target, float *rows, u64 n,
                                      u64 k, int soft) {
    u64 r = global_id();
    if (r >= n) return;
    const float *row = x + r * k;
    float lse = log_sum_exp(row, k);
    if (soft) {
        const float *t = (const float *)target + r * k;
        float l = 0.0f;
        for (u64 j = 0; j < k; j++) l = FADD(l, FMUL(t[j], FSUB(lse, row[j])));
        rows[r] = l;
    } else {
        u32 y = ((const u32 *)target)[r];
        rows[r] = y < k ? FSUB(lse, row[y]) : __int_as_float(0x7fffffff); // NaN
    }
}

// The mean of the rows' losses, summed in order in f64.
extern "C" __global__ void fb_ce_mean(const float *rows, float *out, u64 n) {
    if (global_id() != 0) return;
    double t = 0.0;
    for (u64 r = 0; r < n; r++) t = DADD(t, (double)rows[r]);
    out[0] = (float)DDIV(t, (double)n);
}

extern "C" __global__ void fb_ce_bwd(const float *x, const void *target, const float *grad,
                                     float *dx, u64 n, u64 k, int soft) {
    u64 r = global_id();
    if (r >= n) return;
    const float *row = x + r * k;
    float lse = log_sum_exp(row, k);
    float g = FDIV(grad[0], (float)n);
    if (soft) {
        const float *t = (const float *)target + r * k;
        float mass = 0.0f;
        for (u64 j = 0; j < k; j++) mass = FADD(mass, t[j]);
        for (u64 j = 0; j < k; j++)
            dx[r * k + j] = FMUL(FSUB(FMUL(expf(FSUB(row[j], lse)), mass), t[j]), g);
    } else {
        u32 y = ((const u32 *)target)[r];
        for (u64 j = 0; j < k; j++) {
            float t = j == y ? 1.0f : 0.0f;
            dx[r * k + j] = FMUL(FSUB(expf(FSUB(row[j], lse)), t), g);
        }
    }
}

// ----- Pools (pool.rs: first maximum of a 2x2 window; the 3x3 / 2 / pad-1 pool as candle's
// `maximum` chains) ----------------------------------------------------------------------------

// The row-major index (0..3) of the first maximum of a 2x2 window (strict >).
__device__ __forceinline__ int first_max4(float a, float b, float c, float d, float *m) {
    int at = 0;
    float best = a;
    if (b > best) { best = b; at = 1; }
    if (c > best) { best = c; at = 2; }
    if (d > best) { best = d; at = 3; }
    *m = best;
    return at;
}

extern "C" __global__ void fb_max_pool2(const float *x, float *y, u64 planes, u64 h, u64 w) {
    u64 ho = h / 2, wo = w / 2;
    u64 i = global_id();
    if (i >= planes * ho * wo) return;
    u64 p = i / (ho * wo), oy = (i / wo) % ho, ox = i % wo;
    const float *r0 = x + p * h * w + 2 * oy * w + 2 * ox, *r1 = r0 + w;
    float m;
    first_max4(r0[0], r0[1], r1[0], r1[1], &m);
    y[i] = m;
}

extern "C" __global__ void fb_max_pool2_bwd(const float *x, const float *dy, float *dx,
                                            u64 planes, u64 h, u64 w) {
    u64 ho = h / 2, wo = w / 2;
    u64 i = global_id();
    if (i >= planes * h * w) return;
    u64 p = i / (h * w), yy = (i / w) % h, xx = i % w;
    if (yy >= 2 * ho || xx >= 2 * wo) {
        dx[i] = 0.0f;
        return;
    }
    u64 oy = yy / 2, ox = xx / 2;
    const float *r0 = x + p * h * w + 2 * oy * w + 2 * ox, *r1 = r0 + w;
    float m;
    int at = first_max4(r0[0], r0[1], r1[0], r1[1], &m);
    int mine = (int)((yy % 2) * 2 + xx % 2);
    dx[i] = at == mine ? dy[p * ho * wo + oy * wo + ox] : 0.0f;
}

// candle's `maximum` on f32.
__device__ __forceinline__ float maximum(float a, float b) { return a < b ? b : a; }

// The zero-padded plane's value at padded (r, c).
__device__ __forceinline__ float padded(const float *x, u64 h, u64 w, u64 r, u64 c) {
    return (r == 0 || c == 0 || r > h || c > w) ? 0.0f : x[(r - 1) * w + (c - 1)];
}

// The maximum over a window's three rows at padded column c (rows 2·oy .. 2·oy + 2).
__device__ __forceinline__ float row_max(const float *x, u64 h, u64 w, u64 oy, u64 c) {
    u64 r = 2 * oy;
    return maximum(maximum(padded(x, h, w, r, c), padded(x, h, w, r + 1, c)),
                   padded(x, h, w, r + 2, c));
}

extern "C" __global__ void fb_max_pool3(const float *x, float *y, u64 planes, u64 h, u64 w) {
    u64 ho = (h - 1) / 2 + 1, wo = (w - 1) / 2 + 1;
    u64 i = global_id();
    if (i >= planes * ho * wo) return;
    u64 p = i / (ho * wo), oy = (i / wo) % ho, ox = i % wo;
    const float *xp = x + p * h * w;
    u64 c = 2 * ox;
    y[i] = maximum(maximum(row_max(xp, h, w, oy, c), row_max(xp, h, w, oy, c + 1)),
                   row_max(xp, h, w, oy, c + 2));
}

// The shares of g that m = maximum(maximum(a, b), c) sends to a, b and c (pool.rs max3_grads).
__device__ __forceinline__ float max3_share(float a, float b, float c, float g, int which) {
    float t = maximum(a, b);
    float m = maximum(t, c);
    float eqct = c == m ? 1.0f : 0.0f, eqtm = t == m ? 1.0f : 0.0f;
    if (which == 2) return FDIV(FMUL(eqct, g), FADD(eqtm, 1.0f));
    float gt = FDIV(FMUL(eqtm, g), FADD(eqct, 1.0f));
    float eqa = a == t ? 1.0f : 0.0f, eqb = b == t ? 1.0f : 0.0f;
    if (which == 0) return FDIV(FMUL(eqa, gt), FADD(eqb, 1.0f));
    return FDIV(FMUL(eqb, gt), FADD(eqa, 1.0f));
}

// The gradient reaching row maximum (oy, padded column c): the column stage of pool.rs's
// backward, its contributions added in the order it adds them (ox ascending) from 0.
__device__ float row_max_grad(const float *xp, const float *dyp, u64 h, u64 w, u64 ho, u64 wo,
                              u64 oy, u64 c) {
    float acc = 0.0f;
    // ox with 2·ox + j = c, j in {2, 1, 0}: ox ascending.
    for (int j = 2; j >= 0; j--) {
        if (c < (u64)j || (c - j) % 2 != 0) continue;
        u64 ox = (c - j) / 2;
        if (ox >= wo) continue;
        u64 c0 = 2 * ox;
        float g = max3_share(row_max(xp, h, w, oy, c0), row_max(xp, h, w, oy, c0 + 1),
                             row_max(xp, h, w, oy, c0 + 2), dyp[oy * wo + ox], j);
        acc = FADD(acc, g);
    }
    return acc;
}

extern "C" __global__ void fb_max_pool3_bwd(const float *x, const float *dy, float *dx,
                                            u64 planes, u64 h, u64 w) {
    u64 ho = (h - 1) / 2 + 1, wo = (w - 1) / 2 + 1;
    u64 i = global_id();
    if (i >= planes * h * w) return;
    u64 p = i / (h * w);
    u64 r = (i / w) % h + 1, c = i % w + 1;
    const float *xp = x + p * h * w, *dyp = dy + p * ho * wo;
    float acc = 0.0f;
    // oy with 2·oy + k = r, k in {2, 1, 0}: oy ascending, as the row stage adds them.
    for (int k = 2; k >= 0; k--) {
        if (r < (u64)k || (r - k) % 2 != 0) continue;
        u64 oy = (r - k) / 2;
        if (oy >= ho) continue;
        u64 r0 = 2 * oy;
        float g = max3_share(padded(xp, h, w, r0, c), padded(xp, h, w, r0 + 1, c),
                             padded(xp, h, w, r0 + 2, c),
                             row_max_grad(xp, dyp, h, w, ho, wo, oy, c), k);
        acc = FADD(acc, g);
    }
    dx[i] = acc;
}

// ----- Optimiser (train::optim's in-place passes, all variables in one launch) ----------------

// Variable v: theta ptrs[4v], gradient ptrs[4v+1], first state ptrs[4v+2], second ptrs[4v+3]
// (Adam's v; unused by SGD), lens[v] elements. Block b handles elements
// chunk_start[b] .. + CHUNK of variable chunk_var[b].
__device__ __forceinline__ float scaled(float x, float c) { return FADD(FMUL(x, c), 0.0f); }

extern "C" __global__ void fb_adam(const u64 *ptrs, const u64 *lens, const u32 *chunk_var,
                                   const u64 *chunk_start, float b1, float c1, float b2,
                                   float c2, float r1, float r2, float eps, float wd, int use_wd,
                                   float lr) {
    u32 v = chunk_var[blockIdx.x];
    u64 start = chunk_start[blockIdx.x], len = lens[v];
    float *th = (float *)ptrs[4 * v];
    const float *g = (const float *)ptrs[4 * v + 1];
    float *m = (float *)ptrs[4 * v + 2], *s = (float *)ptrs[4 * v + 3];
    for (u64 i = start + threadIdx.x; i < start + CHUNK && i < len; i += blockDim.x) {
        float gi = g[i];
        float mi = FADD(scaled(m[i], b1), scaled(gi, c1));
        float si = FADD(scaled(s[i], b2), scaled(FMUL(gi, gi), c2));
        float update = FDIV(scaled(mi, r1), FADD(FSQRT(scaled(si, r2)), eps));
        if (use_wd) update = FADD(update, scaled(th[i], wd));
        m[i] = mi;
        s[i] = si;
        th[i] = FSUB(th[i], scaled(update, lr));
    }
}

extern "C" __global__ void fb_sgd(const u64 *ptrs, const u64 *lens, const u32 *chunk_var,
                                  const u64 *chunk_start, float momentum, int use_momentum,
                                  float wd, int use_wd, float lr) {
    u32 v = chunk_var[blockIdx.x];
    u64 start = chunk_start[blockIdx.x], len = lens[v];
    float *th = (float *)ptrs[4 * v];
    const float *g = (const float *)ptrs[4 * v + 1];
    float *buf = (float *)ptrs[4 * v + 2];
    for (u64 i = start + threadIdx.x; i < start + CHUNK && i < len; i += blockDim.x) {
        float gi = use_wd ? FADD(g[i], scaled(th[i], wd)) : g[i];
        float b = use_momentum ? FADD(scaled(buf[i], momentum), gi) : gi;
        buf[i] = b;
        th[i] = FSUB(th[i], scaled(b, lr));
    }
}
