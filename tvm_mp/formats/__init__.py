"""Number formats beyond integer codes, each a per-layer :class:`~tvm_mp.precision.Precision` kind.

Their NumPy definitions live below the kernels, beside the integer arithmetic, because the NumPy reference of a
quantized network computes them too:

* :mod:`tvm_mp.quantize.floats`     reduced-precision floating point (fp16, bf16, fp8 e4m3 / e5m2, any eXmY):
                                    rounding, storage, NumPy reference of a layer.
* :mod:`tvm_mp.quantize.clustering` clustered weights (k-means to K shared int8 values) with products from a
                                    precomputed table: clustering, index packing, table-look-up reference,
                                    hit-rate statistics of an associative memory.

This package holds what builds on them and on :mod:`tvm_mp.schedules`:

* :mod:`.computes`   TE computes of both (the rounding is the same integer bit manipulation as in NumPy).
* :mod:`.kernels`    kernel factories (shape-specialized for compiled models, shape-generic for tests).
* :mod:`.energy`     modelled energy per operation of every format, and of a processing element with a small
                     associative memory beside its multiplier.
* :mod:`.lowering`   what the compiler pass and the report need of such a layer (weight constants, kernel, bytes).
* :mod:`.analysis`   per-model statistics: pair counts of clustered layers on data, modelled energy of a plan.

The NumPy parts (the two above, energy) import no TVM; computes and kernels know nothing of graphs or search.
"""
