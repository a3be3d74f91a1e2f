"""The bottom floor: small helpers every layer may use (files, processes, dataclass validation, ImageNet
class identities, optional extras). It imports nothing else of ``squeezenet`` but :mod:`squeezenet.errors`."""
