"""Stop requests (preemption): every worker stops after the same step, so all can save together."""

import tensorflow as tf


class StopRequests:
    """A trainer mixin: `request_stop` on one worker, `stop_requested` reported by every worker's step.

    With ``watch_stop_requests = True`` (set before the first `fit`), every train step reduces the
    flags of all replicas (a sum over the cluster) and reports ``stop_requested`` = 1.0 on every
    worker as soon as one of them asked, at the same step everywhere, so that all can save a
    checkpoint together (a save may run collectives) and exit.
    """

    watch_stop_requests = False

    def _init_stop_requests(self):
        self._stop_request = tf.Variable(0.0, trainable=False, name="stop_request",
                                         aggregation=tf.VariableAggregation.NONE)

    def request_stop(self, value=True):
        """Asks every worker to stop after its next step (this worker's local flag). Call it from the host
        (a callback or a signal's aftermath)."""
        self._stop_request.assign(1.0 if value else 0.0)

    def stop_requested(self, all_gather):
        """1.0 when any replica of the cluster asked to stop, else 0.0 (float32 scalar, in a step)."""
        # all_gather (as the MoCo keys): a replica-context all_reduce of this scalar fails under
        # MultiWorkerMirroredStrategy on TF 2.21 ("destinations can not be empty").
        flags = all_gather(tf.reshape(tf.cast(self._stop_request, tf.float32), [1]))
        return tf.cast(tf.reduce_max(flags) > 0, tf.float32)
