"""The names interp's vLLM integration reads: where a request names its steering, and where the
engine learns its artifact directory.

    >>> SamplingParams(extra_args={KEY: [{"artifact": "refusal_add", "strength": 0.5}]})
    >>> os.environ[ENV] = "runs/artifacts"
"""

KEY = "interp_steering"  # the SamplingParams.extra_args entry (vllm_xargs on the server) of a request's steering
ENV = "INTERP_VLLM_ARTIFACTS"  # the artifact directory every vLLM worker steers from
