"""optiml: OPT-IML instruction meta-learning for OPT decoders in JAX (SeqIO + T5X-style).

`pip install .` installs the `optiml` package together with the benchmark catalog (`tasks/`,
installed as `optiml/_tasks`) and the gin configs (`gin/`, installed as `optiml/_gin`).
Exact, reproducible environment: `pip install -r requirements.lock` (see README).
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "seqio==0.0.20",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "gin-config==0.5.0",
    "sentencepiece==0.2.2",  # 0.2.3 ships protobuf-7 generated code; Beam needs protobuf < 7
    "numpy==2.4.6",
    "protobuf==6.33.6",  # what TF 2.21 was generated with; apache-beam 2.77 needs < 7
    "tokenizers==0.23.3",
    "rouge-score==0.1.2",
    "nltk==3.10.4",
    "clu==0.0.12",
    "tqdm==4.70.1",
    "pyyaml==6.0.3",
    "jinja2==3.1.6",
    "safetensors==0.8.0",
    "matplotlib==3.11.2",
    "absl-py==2.5.1",
    "psutil==7.2.2",
    "tensorboard==2.21.0",  # clu's metric writers
    "datasets==5.2.0",  # PromptSource rows from the Hugging Face Hub
    "rank-bm25==0.2.2",  # retrieved demonstrations (optiml.bench.sources.retrieval)
]

EXTRAS_REQUIRE = {
    # Checkpoint conversion to/from Hugging Face and metaseq, and the parity tests.
    # torch is pinned exactly: a range lets pip pull a multi-GB CUDA build.
    "convert": ["torch==2.13.0", "transformers==5.23.0"],
    # The lm-evaluation-harness backend (`optiml lm-eval run --model optiml ...`): lm-eval's core,
    # no torch (its `hf` backend, for comparisons, is in the test extra).
    "lm_eval": ["lm_eval==0.4.13"],
    # Preparation as an Apache Beam pipeline (prepare --runner=...); in the lock, so tested.
    "beam": ["apache-beam==2.77.0"],
    "test": [
        "pytest==9.2.0",
        "hypothesis==6.170.15",
        "ruff==0.17.6",
        "nbclient==0.11.0",
        "nbformat==5.11.1",
        "ipykernel==7.4.0",
        "lm_eval[hf]==0.4.13",  # its `hf` backend: the baseline of benchmarks/eval.py and of
        # tests/test_harness.py (the optiml backend against it)
    ],
}

setup(
    name="optiml",
    version="0.1.0",
    description="OPT-IML Bench as SeqIO registries, an OPT decoder in Flax, T5X-style training",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["optiml", "optiml.*"]) + ["optiml._tasks", "optiml._gin"],
    package_dir={"optiml._tasks": "tasks", "optiml._gin": "gin"},
    package_data={"optiml._tasks": ["*", "**/*"], "optiml._gin": ["*", "**/*"]},
    include_package_data=False,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["optiml=optiml.main:console_main"]},
    license="Apache-2.0",
)
