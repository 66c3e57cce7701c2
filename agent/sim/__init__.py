"""The simulated device: ONNX graph analysis (``graph``), device profiles (``profile``), the
device model that prices a graph on a profile (``model``) and the ``Device`` built on them
(``device.SimulatedDevice``). Stands in for hardware in tests and CI; results are marked
``simulated``. ``calibrate`` fits profiles to published measurements and reports their
cross-validated quality (``mlbench`` for the phone-GPU profile).
"""
