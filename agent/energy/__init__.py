"""Energy meters (RAPL, hwmon INA2xx/INA3221, Pi 5 PMIC, battery, estimate, simulated, none)
behind one cumulative-energy interface, their discovery, and the energy protocol."""
from hilnas.agent.energy.base import (INVALIDATING_FLAGS, EnergyMeter, EnergyReading,
                                      MeterError, MeterPermissionError, MeterUnavailableError,
                                      MeterVanishedError, NoneMeter, SampledMeter,
                                      SamplingInsideWindowError, measurement_window, window_open)
from hilnas.agent.energy.battery import BatteryMeter
from hilnas.agent.energy.discover import best_meter, discover_meters
from hilnas.agent.energy.hwmon import HwmonPowerMeter
from hilnas.agent.energy.pmic import PiPmicMeter
from hilnas.agent.energy.protocol import energy_valid, invalid_result, measure_energy
from hilnas.agent.energy.rapl import RaplMeter
from hilnas.agent.energy.simulated import SimulatedMeter, UtilisationEstimateMeter

__all__ = [
    "INVALIDATING_FLAGS", "EnergyMeter", "EnergyReading", "MeterError", "MeterPermissionError",
    "MeterUnavailableError", "MeterVanishedError", "NoneMeter", "SampledMeter",
    "SamplingInsideWindowError", "measurement_window", "window_open", "BatteryMeter",
    "best_meter", "discover_meters", "HwmonPowerMeter", "PiPmicMeter", "energy_valid",
    "invalid_result",
    "measure_energy", "RaplMeter", "SimulatedMeter", "UtilisationEstimateMeter",
]
