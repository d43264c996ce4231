/* cnnfx training support: writing ONNX files, building small graphs, optimizers,
 * learning-rate schedules and the usual classification loss.
 *
 * Training runs on an ordinary session created with CNNFX_GRAD_WEIGHTS: after
 * forward and backward from the loss gradient at the logits, cnnfx_session_grad()
 * gives the gradient at every float initializer, and an optimizer step writes the
 * new values back with cnnfx_session_set_weight().  cnnfx_model_save() then writes
 * the model with the session's current weights as a normal ONNX file.
 */
#ifndef CNNFX_TRAIN_H
#define CNNFX_TRAIN_H

#include "cnnfx.h"

G_BEGIN_DECLS

/* ---- writing ONNX ------------------------------------------------------------ */

/* Serialise a whole model (graph, nodes with their attributes, inputs and outputs with
 * declared shapes, opset import) as an ONNX ModelProto.  Initializers are written as
 * raw_data; where s is given, its current weights (cnnfx_session_set_weight) replace
 * the model's, and output shapes are taken from its last forward pass (dim 0 symbolic
 * when the first input's dim 0 is).  Graph-valued attributes are not supported. */
GBytes *cnnfx_model_save(const CnnfxModel *m, CnnfxSession *s, GError **error);
/* An ensemble as one ModelProto: every model's graph side by side on the first model's input, the
 * output (the first model's output 0 name) the mean of their outputs 0 (Sum, then Mul by 1/n).  The
 * first model keeps its tensor names except its output (renamed OUTPUT.net1), so its layers stay
 * addressable; model k >= 2's names are prefixed "netK.".  The models need one input and the same
 * declared input and output shapes and opset.  2 <= n <= 64. */
GBytes *cnnfx_model_save_mean(const CnnfxModel *const *ms, int n, GError **error);
/* Whether m is such an ensemble; its first network alone (the nodes and initializers its output
 * needs, that output named as the ensemble's): what transfer learning starts from. */
gboolean cnnfx_model_is_ensemble(const CnnfxModel *m);
GBytes *cnnfx_model_save_first_member(const CnnfxModel *m, GError **error);

/* Write bytes to path atomically (temporary file in the same directory + rename). */
gboolean cnnfx_write_file_atomic(const char *path, GBytes *bytes, GError **error);

/* A small graph builder (used for the built-in architectures).  Names are copied.
 * Attribute calls apply to the most recently added node. */
typedef struct CnnfxBuilder CnnfxBuilder;
CnnfxBuilder *cnnfx_builder_new(int opset);
void cnnfx_builder_free(CnnfxBuilder *b);
/* dims[i] < 0 writes a symbolic dimension ("N" for dim 0, "d<i>" otherwise). */
void cnnfx_builder_input(CnnfxBuilder *b, const char *name, CnnfxDType dt, int ndim, const int64_t *dims);
/* ndim < 0: no shape. */
void cnnfx_builder_output(CnnfxBuilder *b, const char *name, CnnfxDType dt, int ndim, const int64_t *dims);
gboolean cnnfx_builder_initializer(CnnfxBuilder *b, const char *name, const CnnfxTensor *t, GError **error);
/* inputs / outputs: NULL-terminated; "" = absent optional input. */
void cnnfx_builder_node(CnnfxBuilder *b, const char *op_type, const char *name, const char *const *inputs,
                        const char *const *outputs);
void cnnfx_builder_attr_int(CnnfxBuilder *b, const char *name, int64_t v);
void cnnfx_builder_attr_float(CnnfxBuilder *b, const char *name, float v);
void cnnfx_builder_attr_string(CnnfxBuilder *b, const char *name, const char *v);
void cnnfx_builder_attr_ints(CnnfxBuilder *b, const char *name, int n, const int64_t *v);
void cnnfx_builder_attr_floats(CnnfxBuilder *b, const char *name, int n, const float *v);
void cnnfx_builder_doc(CnnfxBuilder *b, const char *doc_string);
/* key/value metadata_props of the ModelProto */
void cnnfx_builder_metadata(CnnfxBuilder *b, const char *key, const char *value);
/* The ModelProto bytes (the builder stays usable for nothing else: free it). */
GBytes *cnnfx_builder_finish(CnnfxBuilder *b, const char *graph_name, GError **error);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CnnfxBuilder, cnnfx_builder_free)

/* ---- built-in architectures --------------------------------------------------- */

/* "lenet5"        conv5x5(6,pad 2)+relu+maxpool2, conv5x5(16)+relu+maxpool2, fc120+relu,
 *                  fc84+relu, fc10; input "input" [N,1,28,28], output "logits" [N,10].
 * "lenet5-wide"   same layout with 32 and 64 conv channels, fc256, fc128.
 * "random-style"  weight-free multi-scale random-feature network for texture/style
 *                  (Ustyuzhaninov et al. 2016; He et al. 2016): parallel random conv
 *                  banks (3x3, 5x5, 7x7, 11x11, 7x7 dilated 2 and 4, and 7x7 dilated 2
 *                  after 4x4 average pooling) + ReLU on an RGB input "input" [N,3,H,W];
 *                  every bank's ReLU output (rf3 rf5 rf7 rf11 rf7d2 rf7d4 rfp4) is a graph output.
 * Weights are He-initialised from seed (same seed, same bytes). */
GBytes *cnnfx_arch_build(const char *arch, guint64 seed, GError **error);
/* "cifar-net"     airbench94-like CIFAR network: conv3x3(32)+BN+ReLU stem, then three blocks
 *                  conv3x3 + 2x2 max-pool + BN + ReLU + conv3x3 + BN + ReLU with 64, 256, 256
 *                  channels, global max-pool, Gemm to the classes; input "input" [N,3,32,32],
 *                  output "logits" [N,classes]; about 0.29 GFLOP per image forward.
 * "cifar-net-m"   the same with 24 / 48, 128, 192 channels;
 * "cifar-net-s"   16 / 32, 64, 128;  "cifar-tiny" 8 / 16, 32, 32 (tests).
 * These have BatchNormalization (opset 15).  training: BN in training form (training_mode=1,
 * batch statistics) with running statistics as extra outputs (cnnfx_train_bn_stat_pairs);
 * otherwise the inference form.  Both forms have the same initializer names and, for the same
 * seed, the same values.  classes: size of the last layer (the other archs ignore it: 10). */
GBytes *cnnfx_arch_build_full(const char *arch, guint64 seed, int classes, gboolean training, GError **error);
gboolean cnnfx_arch_has_batchnorm(const char *arch);
/* "cifar-white-gelu" is cifar-white with GELU (exact, erf) in place of every ReLU, as airbench94 has;
 * its activations are named stem.gelu, bK.gelu1, bK.gelu2 and the file is opset 20 (Gelu's first).
 * "cifar-tiny-gelu": the same at cifar-tiny's widths, for tests. */
gboolean cnnfx_arch_uses_gelu(const char *arch);
/* The last block's second activation (Grad-CAM) and block 2's (Deep Dream) of a cifar-* arch; NULL
 * for the others. */
const char *cnnfx_arch_cam_layer(const char *arch);
const char *cnnfx_arch_dream_layer(const char *arch);
/* "cifar-white"   airbench94's network: a whitening stem (2x2 conv 3 -> 24 channels, no padding,
 *                  with bias, initializer "whiten.weight" / "whiten.bias", then ReLU), the three
 *                  blocks of cifar-net (64, 256, 256) with identity-initialised convolutions and
 *                  BatchNorm momentum 0.4.  Its trainer sets whiten.weight from the data
 *                  (cnnfx_whitening_weights) and trains neither it nor the BatchNorm scales. */
gboolean cnnfx_arch_is_whitened(const char *arch);
#define CNNFX_WHITEN_WIDTH 24

/* Patch-whitening weights for a k x k conv on c-channel images x [n,c,h,w]: the eigenvectors of
 * the patches' (uncentred) second-moment matrix, each divided by sqrt(eigenvalue + eps), largest
 * first, then the same rows negated; out is [2*c*k*k, c, k, k] (c*k*k <= 64). */
gboolean cnnfx_whitening_weights(const float *x, int n, int c, int h, int w, int k, double eps, CnnfxTensor *out,
                                 GError **error);

/* BatchNormalization nodes in training form: NULL-terminated list of name pairs
 * (running-statistic output, initializer it replaces), i.e. out[1]->in[3], out[2]->in[4].
 * After each training forward the caller copies each output into its initializer
 * (cnnfx_session_set_weight).  Free with g_strfreev. */
char **cnnfx_train_bn_stat_pairs(const CnnfxModel *m);
/* The momentum of the training-form BatchNormalization whose running-statistic output is
 * stat_output (running = momentum * given + (1 - momentum) * batch); -1 if there is none. */
double cnnfx_train_bn_stat_momentum(const CnnfxModel *m, const char *stat_output);
/* Copy every float initializer of dst_model that src_model also has with the same shape from
 * src (its current weights; src NULL: src_model's stored values) into dst. */
gboolean cnnfx_train_copy_weights(CnnfxSession *dst, const CnnfxModel *dst_model, CnnfxSession *src,
                                  const CnnfxModel *src_model, int *n_copied, GError **error);
/* NULL-terminated list of the names above (static). */
const char *const *cnnfx_arch_names(void);

/* ---- transfer learning ---------------------------------------------------------------- */

/* A copy of m with a new classifier head for `classes` classes: the layer that computes the
 * first output (through Softmax / LogSoftmax / Flatten / Reshape / Squeeze / Identity /
 * Dropout / Relu / global or average pooling) must be a Gemm, a MatMul (+ Add of a bias) or a 1x1 Conv; its weights become
 * small random values (seeded) and its bias zeros.  head_params (optional): NULL-terminated
 * names of the new initializers; old_classes: the old class count. */
GBytes *cnnfx_model_new_head(const CnnfxModel *m, int classes, guint64 seed, char ***head_params, int *old_classes,
                             GError **error);
/* Float initializers of the last k+1 weighted layers (Conv / Gemm / MatMul, counted from the
 * end, the head included) and of the BatchNormalization (scale, bias) / Add nodes among them.
 * NULL-terminated, g_strfreev. */
char **cnnfx_model_last_layers_params(const CnnfxModel *m, int k);

/* ---- optimizers --------------------------------------------------------------- */

typedef enum { CNNFX_OPTIM_SGD, CNNFX_OPTIM_ADAM } CnnfxOptimKind;

typedef struct {
  CnnfxOptimKind kind;
  double momentum;      /* SGD (torch.optim.SGD semantics, dampening 0) */
  gboolean nesterov;
  double weight_decay;  /* L2 added to the gradient (torch semantics, both optimizers) */
  double beta1, beta2, eps; /* Adam; 0 = defaults 0.9, 0.999, 1e-8 */
  GHashTable *only;     /* optional set of initializer names: train only these (fine-tuning) */
  GHashTable *skip;     /* optional set of initializer names never to train */
  GHashTable *scaled;   /* optional set of names whose lr is multiplied by scaled_lr and whose weight decay */
  double scaled_lr;     /* by 1/scaled_lr (the product, the decay per step, stays): BatchNorm biases (Page) */
} CnnfxOptimConfig;

typedef struct CnnfxOptimizer CnnfxOptimizer;

/* Parameters: every float initializer of m that a CNNFX_GRAD_WEIGHTS session s trains.
 * Starting values are the session's current weights. */
CnnfxOptimizer *cnnfx_optimizer_new(const CnnfxModel *m, CnnfxSession *s, const CnnfxOptimConfig *cfg,
                                    GError **error);
void cnnfx_optimizer_free(CnnfxOptimizer *o);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CnnfxOptimizer, cnnfx_optimizer_free)
int cnnfx_optimizer_n_params(const CnnfxOptimizer *o);
const char *cnnfx_optimizer_param_name(const CnnfxOptimizer *o, int i);
size_t cnnfx_optimizer_n_values(const CnnfxOptimizer *o); /* total trainable numbers */
gint64 cnnfx_optimizer_steps(const CnnfxOptimizer *o);
/* One update from the gradients of the session's last backward pass, at learning rate lr;
 * the new weights are written into the session. */
gboolean cnnfx_optimizer_step(CnnfxOptimizer *o, double lr, GError **error);
/* Tell the session that only the parameters being updated (not frozen, not skipped) need
 * gradients (cnnfx_session_want_grads): backward stops where nothing trainable is left.  Call it
 * again after freezing or unfreezing; the weights it trains come out the same. */
gboolean cnnfx_optimizer_prune_grads(CnnfxOptimizer *o, GError **error);
/* Stop (frozen) or resume updating one parameter; its momentum is kept.  FALSE: no such parameter. */
gboolean cnnfx_optimizer_freeze(CnnfxOptimizer *o, const char *name, gboolean frozen);
/* Lookahead (Zhang et al. 2019, as airbench uses it): the first call copies the weights as the slow
 * weights; later calls move the slow weights towards the current ones, slow += (1-decay)(w - slow),
 * and set the weights to the slow ones (decay 1: back to the slow weights). */
gboolean cnnfx_optimizer_lookahead(CnnfxOptimizer *o, double decay, GError **error);
/* Whether lookahead has slow weights (its first call happened, or they were loaded). */
gboolean cnnfx_optimizer_lookahead_started(const CnnfxOptimizer *o);
/* Optimizer state (moments, slow weights, step count, plus a caller counter such as the epoch) for resuming. */
GBytes *cnnfx_optimizer_save_state(const CnnfxOptimizer *o, gint64 user_counter);
gboolean cnnfx_optimizer_load_state(CnnfxOptimizer *o, const void *data, size_t len, gint64 *user_counter,
                                    GError **error);

/* ---- learning-rate schedules ---------------------------------------------------- */

typedef enum { CNNFX_LR_CONSTANT, CNNFX_LR_STEP, CNNFX_LR_COSINE, CNNFX_LR_ONECYCLE } CnnfxLrSchedule;

/* lr after `done` of `total` steps (done in [0,total]).  STEP multiplies base by gamma
 * every step_every steps; COSINE anneals from base to base*min_factor (half cosine); ONECYCLE rises
 * linearly from base*min_factor to base over the first step_every steps, then falls linearly to 0. */
double cnnfx_lr_at(CnnfxLrSchedule kind, double base, gint64 done, gint64 total, gint64 step_every, double gamma,
                   double min_factor);
/* The same, ONECYCLE ending at base*end_factor instead of 0 (airbench: 0.07). */
double cnnfx_lr_at_end(CnnfxLrSchedule kind, double base, gint64 done, gint64 total, gint64 step_every, double gamma,
                       double min_factor, double end_factor);

/* ---- loss and metrics ------------------------------------------------------------ */

/* Softmax cross-entropy averaged over the batch.  logits [B,K] (or [B,K,1,1]), labels[B] in
 * [0,K).  Returns the mean loss; grad (optional, same shape as logits) gets
 * (softmax - onehot) / B, the seed for cnnfx_session_backward.  n_correct (optional):
 * how many argmaxes equal the label.  Returns a negative value with error set on bad input. */
double cnnfx_softmax_xent(const CnnfxTensor *logits, const int *labels, CnnfxTensor *grad, int *n_correct,
                          GError **error);
/* The same with label smoothing s (torch's label_smoothing): the target is (1-s)*onehot + s/K. */
double cnnfx_softmax_xent_smooth(const CnnfxTensor *logits, const int *labels, double smoothing, CnnfxTensor *grad,
                                 int *n_correct, GError **error);
/* Number of rows of [B,K] logits whose argmax is the label. */
int cnnfx_count_correct(const CnnfxTensor *logits, const int *labels);

G_END_DECLS

#endif
