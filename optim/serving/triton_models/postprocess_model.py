"""Triton Python-backend model: DETR's raw outputs + `orig_size` -> `boxes` (B, Q, 4) absolute xyxy, `scores`
(B, Q) and `labels` (B, Q), one detection per query (clients filter by score).

Written into a model repository by `optim.deploy` as `<variant>_postprocess/1/model.py`, beside
`postprocess.py` (a copy of `optim/evaluation/postprocess.py`: the post-processing the lab scores with).
"""

import numpy as np
import triton_python_backend_utils as pb_utils
from postprocess import postprocess

KEEP_ALL = -1.0  # score threshold below any softmax score: fixed-shape outputs, one row per query


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            logits, boxes, sizes = (pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                                    for name in ("logits", "pred_boxes", "orig_size"))
            detections = postprocess(logits, boxes, sizes, score_threshold=KEEP_ALL)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("boxes", np.stack([d.boxes for d in detections]).astype(np.float32)),
                pb_utils.Tensor("scores", np.stack([d.scores for d in detections]).astype(np.float32)),
                pb_utils.Tensor("labels", np.stack([d.labels for d in detections]).astype(np.int64))]))
        return responses
