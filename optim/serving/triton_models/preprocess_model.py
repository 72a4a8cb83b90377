"""Triton Python-backend model: encoded images -> `pixel_values` (B, 3, H, W) float32 and `orig_size` (B, 2).

Written into a model repository by `optim.deploy` as `<variant>_preprocess/1/model.py`, beside `pixels.py`
(a copy of `optim/data/pixels.py`: the lab's own pre-processing). The input size comes from the config's
`parameters`. A request whose image does not decode gets an error response; the others in the batch are served.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from pixels import decode_image, preprocess_array


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.input_size = (int(parameters["input_height"]["string_value"]),
                           int(parameters["input_width"]["string_value"]))

    def execute(self, requests):
        responses = []
        for request in requests:
            encoded = pb_utils.get_input_tensor_by_name(request, "image").as_numpy().reshape(-1)
            try:
                images = [decode_image(bytes(item)) for item in encoded]
            except ValueError as error:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"input 'image': {error}")))
                continue
            pixels = np.stack([preprocess_array(image, self.input_size) for image in images])
            sizes = np.array([[image.height, image.width] for image in images], dtype=np.int64)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("pixel_values", pixels),
                                                         pb_utils.Tensor("orig_size", sizes)]))
        return responses
