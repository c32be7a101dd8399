r"""Weighted cosine kNN evaluation of a pretrained encoder.

    python -m trainers.knn_eval --encoder /tmp/mixmask_demo
    python -m trainers.knn_eval --encoder /tmp/mixmask_demo --checkpoint ckpt-00003.npz
    python -m trainers.knn_eval --encoder /tmp/mixmask_demo/export          # the served SavedModel
    python -m trainers.knn_eval --encoder /tmp/mixmask_demo --feature=head  # with the projection head

Bank = the train split (deterministic transform), queries = the test split; each of the k
nearest neighbours (cosine similarity of L2-normalised features) votes exp(sim / T) for its
class (InstDisc / MoCo monitor; k = 200, T = 0.1). The similarity is computed block by block
with a running top-k, so memory stays bounded for an ImageNet-sized bank. Prints top-1 and
top-5 and writes `<model_dir>/eval/knn.json` for a run (or --output).

--feature=backbone (default) scores the pooled backbone output; --feature=head the query
encoder's output with its projection head (MoCo: the query embedding of the loss; SimCLR,
SimSiam, BYOL: the projector output, not the predictor), restored from the run's training
checkpoint, as the MoCo CIFAR demo and Un-Mix's CIFAR code score it (`eval/knn-head.json`).
Only a pretraining model_dir has a head: an export or a .keras file holds the backbone alone.
The results record `knn_feature`.
"""

import time

from absl import app, flags

from . import eval_common
from .flag_groups import UserError

FLAGS = flags.FLAGS

flags.DEFINE_integer("k", 200, "Neighbours.")
flags.DEFINE_float("temperature", 0.1, "T of the exp(sim / T) vote.")
flags.DEFINE_integer("bank_chunk_size", 65536, "Bank entries per similarity block (memory: queries x this).")
flags.DEFINE_enum("feature", "backbone", ["backbone", "head"],
                  "What is scored: the pooled backbone output, or the query encoder's output with its projection "
                  "head (MoCo: the query embedding; SimCLR / SimSiam / BYOL: the projector output), restored from "
                  "the run's training checkpoint (a pretraining model_dir only; with --control=random_init the "
                  "same backbone + head freshly initialised).")


def run():
    from mixmask_tf import knn

    if FLAGS.k < 1 or FLAGS.temperature <= 0 or FLAGS.bank_chunk_size < 1:
        raise UserError("--k and --bank_chunk_size must be >= 1 and --temperature > 0")
    encoder = eval_common.load_encoder(feature=FLAGS.feature)
    print(eval_common.describe(encoder), flush=True)
    train, test = eval_common.open_labeled_sources(encoder)
    bank, bank_labels = eval_common.features(encoder, train, normalize=True)
    queries, labels = eval_common.features(encoder, test, normalize=True)
    start = time.time()
    num_classes = int(max(train.info.num_classes, bank_labels.max() + 1, labels.max() + 1))
    result = knn.knn_evaluate(bank, bank_labels, queries, labels, num_classes, FLAGS.k, FLAGS.temperature,
                              bank_chunk_size=FLAGS.bank_chunk_size)
    results = {**eval_common.common_results(encoder, train, test), "k": FLAGS.k, "temperature": FLAGS.temperature,
               "knn_feature": FLAGS.feature, "knn_top1": result["top1"], "knn_top5": result.get("top5"),
               "seconds": round(time.time() - start, 2)}
    path = eval_common.write_results("knn", results, feature=FLAGS.feature)
    top5 = f", top-5 {result['top5']:.2f}%" if "top5" in result else ""
    head = " of the head output" if FLAGS.feature == "head" else ""
    print(f"kNN (k={FLAGS.k}, T={FLAGS.temperature}) on {FLAGS.dataset} {FLAGS.test_split}: "
          f"top-1 {result['top1']:.2f}%{top5}{head}" + (f"  [{path}]" if path else ""), flush=True)


def entry_point():
    """The console script `mixmask-knn-eval`."""
    app.run(eval_common.main_wrapper("knn_eval", run))


if __name__ == "__main__":
    entry_point()
