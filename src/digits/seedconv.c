/* The seed network's first block, forward and backward, for CPUs: 3x3 convolution of one 28x28 input
 * channel, bias, ReLU and 2x2 max-pooling in one pass over the image, and the weight and bias gradients
 * of the same in one pass back.
 *
 * PyTorch runs this block as four kernels (convolution, max-pool, and their two backward passes) at
 * ~0.2 ms each for a batch of 32, mostly overhead for what is 6 million multiply-adds. Here each
 * pooled output computes its four candidate convolutions in registers, keeps the largest, and records
 * which (0-3) won, so the backward pass sends the gradient to that one only, as max_pool2d's does
 * (ties go to the first, as there).
 *
 * Layouts (all C-contiguous):
 *   x    (n, 28, 28)      float32, the input images
 *   wt   (9, C)           float32, the convolution weights tap-major: wt[3*dy + dx][c] = weight[c, 0, dy, dx]
 *   b    (C)              float32
 *   h    (n, 13, 13, C)   relu(max over the 2x2 window of conv + b): float32, or bfloat16 when bf16 != 0
 *   arg  (n, 13, 13, C)   uint8, which of the window's four positions (2*dy + dx) was the largest
 *   gh   like h           the loss gradient with respect to h
 *   gwt  (9, C), gb (C)   float32, the weight and bias gradients (overwritten, not accumulated)
 * C must be a multiple of L. Arithmetic is float32 throughout; only h and gh may be stored as bfloat16.
 * Written with GCC/Clang vector extensions, so the compiler maps L floats to whatever vectors the CPU has.
 */
#include <stdint.h>
#include <string.h>

#define L 16 /* channels per chunk; fused.py's KERNEL_CHANNELS must equal it */
typedef float vf __attribute__((vector_size(4 * L)));
typedef int32_t vi __attribute__((vector_size(4 * L)));
typedef uint32_t vu __attribute__((vector_size(4 * L)));
typedef uint16_t vu16 __attribute__((vector_size(2 * L)));
typedef uint8_t vu8 __attribute__((vector_size(L)));

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
