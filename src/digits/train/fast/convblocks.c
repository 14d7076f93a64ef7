/* First blocks of two networks, forward and backward, for CPUs. At MNIST's sizes PyTorch runs each of
 * these blocks as several small kernels, mostly overhead for a few million multiply-adds; here each is
 * one pass over the images forward and one or two back.
 *
 * conv_pool_*: the seed network's 3x3 convolution of one 28x28 input channel, bias, ReLU and 2x2
 *   max-pooling. Each pooled output computes its four candidate convolutions in registers, keeps the
 *   largest, and records which (0-3) won, so the backward pass sends the gradient to that one only, as
 *   max_pool2d's does (ties go to the first, as there).
 * stem_*: fastnet's stride-2 stem: a 3x3 convolution with stride 2 and one pixel of zero padding of one
 *   28x28 input channel (no bias), batch normalisation with the batch's statistics (training mode), and
 *   ReLU. The forward pass keeps the convolution (float32) for the backward pass, which needs no input
 *   gradient (nothing comes before the stem) and gives the weight, scale and shift gradients.
 *
 * Layouts (all C-contiguous; C, the number of channels, a multiple of L):
 *   x     (n, 28, 28)      float32, the input images
 *   wt    (9, C)           float32, the convolution weights tap-major: wt[3*dy + dx][c] = weight[c, 0, dy, dx]
 *   b     (C)              float32, the seed convolution's bias
 *   h     (n, 13, 13, C)   seed: relu(max over the 2x2 window of conv + b)
 *         (n, 14, 14, C)   stem: relu(gamma * (conv - mean) / sqrt(var + eps) + beta)
 *                          float32, or bfloat16 when bf16 != 0
 *   arg   (n, 13, 13, C)   uint8, seed: which of the window's four positions (2*dy + dx) was the largest
 *   conv  (n, 14, 14, C)   float32, stem: the convolution, written forward and read back
 *   mean, var (C)          float32, stem: the batch's mean and biased variance of conv, per channel
 *   gh    like h           the loss gradient with respect to h
 *   gwt (9, C), gb, ggamma, gbeta (C)   float32 gradients (overwritten, not accumulated)
 * Arithmetic is float32 (statistics summed in double); only h and gh may be stored as bfloat16. Written
 * with GCC/Clang vector extensions, so the compiler maps L floats to whatever vectors the CPU has.
 */
#include <stdint.h>
#include <math.h>
#include <string.h>

#define L 16 /* channels per chunk; fused.py's KERNEL_CHANNELS must equal it */
typedef float vf __attribute__((vector_size(4 * L)));
typedef int32_t vi __attribute__((vector_size(4 * L)));
typedef uint32_t vu __attribute__((vector_size(4 * L)));
typedef uint16_t vu16 __attribute__((vector_size(2 * L)));
typedef uint8_t vu8 __attribute__((vector_size(L)));
typedef double vd __attribute__((vector_size(8 * L)));

static inline vf loadf(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline vf blend(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

static inline void store_h(void *h, int64_t o, int bf16, vf v) {
    if (bf16) {
        vu u = (vu)v;
        u += 0x7FFFu + ((u >> 16) & 1u); /* round to nearest even */
        vu16 r = __builtin_convertvector(u >> 16, vu16);
        memcpy((uint16_t *)h + o, &r, sizeof r);
    } else {
        memcpy((float *)h + o, &v, sizeof v);
    }
}

static inline vf load_h(const void *h, int64_t o, int bf16) {
    if (bf16) {
        vu16 r; memcpy(&r, (const uint16_t *)h + o, sizeof r);
        return (vf)(__builtin_convertvector(r, vu) << 16);
    }
    return loadf((const float *)h + o);
}

static inline void window(const float *xi, int i, int j, float win[16]) {
    for (int r = 0; r < 4; r++) memcpy(win + 4 * r, xi + (2 * i + r) * 28 + 2 * j, 4 * sizeof(float));
}

void conv_pool_forward(const float *restrict x, const float *restrict wt, const float *restrict b, int64_t n,
                       int64_t C, void *restrict h, int bf16, uint8_t *restrict arg) {
    for (int64_t c0 = 0; c0 < C; c0 += L) {
        vf w[9];
        for (int k = 0; k < 9; k++) w[k] = loadf(wt + k * C + c0);
        vf bias = loadf(b + c0);
        for (int64_t img = 0; img < n; img++) {
            const float *xi = x + img * 784;
            for (int i = 0; i < 13; i++) {
                for (int j = 0; j < 13; j++) {
                    float win[16];
                    window(xi, i, j, win);
                    vf best = {0};
                    vi which = {0};
                    for (int q = 0; q < 4; q++) {
                        const float *p = win + (q >> 1) * 4 + (q & 1);
                        vf acc = p[0] * w[0] + p[1] * w[1] + p[2] * w[2];
                        acc += p[4] * w[3] + p[5] * w[4] + p[6] * w[5];
                        acc += p[8] * w[6] + p[9] * w[7] + p[10] * w[8];
                        if (q == 0) {
                            best = acc;
                        } else {
                            vi gt = acc > best;
                            best = blend(gt, acc, best);
                            which = (which & ~gt) | (gt & q);
                        }
                    }
                    int64_t o = ((img * 13 + i) * 13 + j) * C + c0;
                    vu8 wb = __builtin_convertvector(which, vu8);
                    memcpy(arg + o, &wb, sizeof wb);
                    vf v = best + bias;
                    vf zero = {0};
                    store_h(h, o, bf16, blend(v > zero, v, zero));
                }
            }
        }
    }
}

void conv_pool_backward(const float *restrict x, const void *restrict h, const void *restrict gh,
                        const uint8_t *restrict arg, int64_t n, int64_t C, int bf16, float *restrict gwt,
                        float *restrict gb) {
    for (int64_t c0 = 0; c0 < C; c0 += L) {
        vf gw[9] = {{0}}, gbias = {0}, zero = {0};
        for (int64_t img = 0; img < n; img++) {
            const float *xi = x + img * 784;
            for (int i = 0; i < 13; i++) {
                for (int j = 0; j < 13; j++) {
                    int64_t o = ((img * 13 + i) * 13 + j) * C + c0;
                    vf g = blend(load_h(h, o, bf16) > zero, load_h(gh, o, bf16), zero);
                    gbias += g;
                    float win[16];
                    window(xi, i, j, win);
                    vu8 ab; memcpy(&ab, arg + o, sizeof ab);
                    vi a = __builtin_convertvector(ab, vi);
                    for (int q = 0; q < 4; q++) {
                        const float *p = win + (q >> 1) * 4 + (q & 1);
                        vf m = blend(a == q, g, zero);
                        gw[0] += p[0] * m; gw[1] += p[1] * m; gw[2] += p[2] * m;
                        gw[3] += p[4] * m; gw[4] += p[5] * m; gw[5] += p[6] * m;
                        gw[6] += p[8] * m; gw[7] += p[9] * m; gw[8] += p[10] * m;
                    }
                }
            }
        }
        for (int k = 0; k < 9; k++) memcpy(gwt + k * C + c0, &gw[k], sizeof(vf));
        memcpy(gb + c0, &gbias, sizeof(vf));
    }
}

/* --- fastnet's stride-2 stem ------------------------------------------------------------------------ */
#define P 29 /* padded image side: a row and a column of zeros before the image (after it, stride 2 never reads) */

static inline void pad(const float *xi, float *p) {
    memset(p, 0, P * sizeof(float));
    for (int r = 0; r < 28; r++) {
        p[(r + 1) * P] = 0;
        memcpy(p + (r + 1) * P + 1, xi + r * 28, 28 * sizeof(float));
    }
}

static inline vf stem_conv(const float *p, int i, int j, const vf w[9]) {
    const float *q = p + 2 * i * P + 2 * j;
    vf acc = q[0] * w[0] + q[1] * w[1] + q[2] * w[2];
    acc += q[P] * w[3] + q[P + 1] * w[4] + q[P + 2] * w[5];
    acc += q[2 * P] * w[6] + q[2 * P + 1] * w[7] + q[2 * P + 2] * w[8];
    return acc;
}

void stem_forward(const float *restrict x, const float *restrict wt, const float *restrict gamma,
                  const float *restrict beta, int64_t n, int64_t C, double eps, float *restrict conv,
                  void *restrict h, int bf16, float *restrict mean_out, float *restrict var_out) {
    float p[P * P];
    const double count = (double)n * 196;
    for (int64_t c0 = 0; c0 < C; c0 += L) {
        vf w[9], zero = {0};
        for (int k = 0; k < 9; k++) w[k] = loadf(wt + k * C + c0);
        vd sum = {0}, sumsq = {0};
        for (int64_t img = 0; img < n; img++) {
            pad(x + img * 784, p);
            vf s = {0}, s2 = {0};
            for (int i = 0; i < 14; i++) {
                for (int j = 0; j < 14; j++) {
                    vf v = stem_conv(p, i, j, w);
                    memcpy(conv + ((img * 14 + i) * 14 + j) * C + c0, &v, sizeof v);
                    s += v;
                    s2 += v * v;
                }
            }
            sum += __builtin_convertvector(s, vd);
            sumsq += __builtin_convertvector(s2, vd);
        }
        vd mean = sum / count, var = sumsq / count - mean * mean;
        vf scale, shift;
        for (int c = 0; c < L; c++) {
            double v = var[c] > 0 ? var[c] : 0; /* rounding can leave a constant channel slightly negative */
            scale[c] = (float)(gamma[c0 + c] / sqrt(v + eps));
            shift[c] = (float)(beta[c0 + c] - mean[c] * scale[c]);
            mean_out[c0 + c] = (float)mean[c];
            var_out[c0 + c] = (float)v;
        }
        for (int64_t o = c0; o < n * 196 * C; o += C) {
            vf v = loadf(conv + o) * scale + shift;
            store_h(h, o, bf16, blend(v > zero, v, zero));
        }
    }
}

void stem_backward(const float *restrict x, const float *restrict conv, const float *restrict gamma,
                   const float *restrict mean, const float *restrict var, double eps, const void *restrict h,
                   const void *restrict gh, int64_t n, int64_t C, int bf16, float *restrict gwt,
                   float *restrict ggamma, float *restrict gbeta) {
    float p[P * P];
    const double count = (double)n * 196;
    for (int64_t c0 = 0; c0 < C; c0 += L) {
        vf mu = loadf(mean + c0), invstd, zero = {0};
        for (int c = 0; c < L; c++) invstd[c] = (float)(1.0 / sqrt((double)var[c0 + c] + eps));
        /* pass 1: beta's gradient (the sum of the gradient through the ReLU) and gamma's (its sum times
         * the normalised convolution) */
        vd sum_g = {0}, sum_gx = {0};
        for (int64_t img = 0; img < n; img++) {
            vf s = {0}, sx = {0};
            for (int64_t o = img * 196 * C + c0; o < (img + 1) * 196 * C; o += C) {
                vf g = blend(load_h(h, o, bf16) > zero, load_h(gh, o, bf16), zero);
                s += g;
                sx += g * ((loadf(conv + o) - mu) * invstd);
            }
            sum_g += __builtin_convertvector(s, vd);
            sum_gx += __builtin_convertvector(sx, vd);
        }
        /* pass 2: the convolution's gradient, gamma * invstd * (g - mean(g) - xhat * mean(g * xhat)),
         * times the input under each of the nine taps */
        vf g_mean = __builtin_convertvector(sum_g / count, vf), gx_mean = __builtin_convertvector(sum_gx / count, vf);
        vf a = loadf(gamma + c0) * invstd;
        vf gw[9] = {{0}};
        for (int64_t img = 0; img < n; img++) {
            pad(x + img * 784, p);
            for (int i = 0; i < 14; i++) {
                for (int j = 0; j < 14; j++) {
                    int64_t o = ((img * 14 + i) * 14 + j) * C + c0;
                    vf g = blend(load_h(h, o, bf16) > zero, load_h(gh, o, bf16), zero);
                    vf xhat = (loadf(conv + o) - mu) * invstd;
                    vf d = a * (g - g_mean - xhat * gx_mean);
                    const float *q = p + 2 * i * P + 2 * j;
                    gw[0] += q[0] * d; gw[1] += q[1] * d; gw[2] += q[2] * d;
                    gw[3] += q[P] * d; gw[4] += q[P + 1] * d; gw[5] += q[P + 2] * d;
                    gw[6] += q[2 * P] * d; gw[7] += q[2 * P + 1] * d; gw[8] += q[2 * P + 2] * d;
                }
            }
        }
        for (int k = 0; k < 9; k++) memcpy(gwt + k * C + c0, &gw[k], sizeof(vf));
        for (int c = 0; c < L; c++) {
            ggamma[c0 + c] = (float)sum_gx[c];
            gbeta[c0 + c] = (float)sum_g[c];
        }
    }
}
