"""check.py on hand-made logs: a correct run passes, and each kind of mistake is reported."""

from __future__ import annotations

import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from check import check  # noqa: E402

CP = "IB-0001"


def msg(ts, direction, type_, uid, action, payload):
    return {"ts": ts, "kind": "message", "dir": direction, "charger": CP, "type": type_, "id": uid,
            "action": action, "payload": payload}


def status(ts, uid, connector, value):
    return msg(ts, "in", 2, uid, "StatusNotification",
               {"connectorId": connector, "errorCode": "NoError", "status": value})


def good_logs():
    csms = [
        {"ts": 1.0, "kind": "listening"},
        {"ts": 2.0, "kind": "connect", "charger": CP, "subprotocol": "ocpp1.6", "tls_version": "TLSv1.3"},
        msg(2.1, "in", 2, "b", "BootNotification", {"chargePointVendor": "Heidelberg", "chargePointModel": "Energy Control"}),
        msg(2.1, "out", 3, "b", "BootNotification", {"status": "Accepted", "interval": 30, "currentTime": "x"}),
        status(2.2, "s0", 0, "Available"),
        status(2.3, "s1", 1, "Available"),
        {"ts": 2.8, "kind": "call_result", "charger": CP, "action": "ChangeConfiguration",
         "request": {"key": "MeterValueSampleInterval", "value": "5"}, "status": "Accepted"},
        status(4.0, "s2", 1, "Preparing"),
        msg(4.1, "in", 2, "st", "StartTransaction",
            {"connectorId": 1, "idTag": CP, "meterStart": 1000, "timestamp": "x"}),
        msg(4.1, "out", 3, "st", "StartTransaction", {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}),
        status(5.0, "s3", 1, "Charging"),
        msg(10.0, "in", 2, "mv", "MeterValues", {"connectorId": 1, "transactionId": 7, "meterValue": [
            {"timestamp": "x", "sampledValue": [
                {"value": "1015", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                {"value": "11040.0", "measurand": "Power.Active.Import", "unit": "W"},
            ]}]}),
        msg(13.0, "in", 2, "sp", "StopTransaction",
            {"transactionId": 7, "meterStop": 1024, "timestamp": "x", "reason": "EVDisconnected"}),
        status(13.1, "s4", 1, "Finishing"),
        status(13.2, "s5", 1, "Available"),
    ]
    wallbox = [
        {"ts": 1.0, "kind": "started", "energy": 1000},
        {"ts": 2.5, "kind": "write", "function": 16, "address": 257, "values": [15000, 4]},
        {"ts": 3.9, "kind": "plug", "energy": 1000, "limit_raw": 0},
        {"ts": 4.2, "kind": "write", "function": 16, "address": 261, "values": [160]},
        {"ts": 12.9, "kind": "unplug", "energy": 1024},
    ]
    return csms, wallbox


def find(logs, action):
    return next(r for r in logs if r.get("action") == action and r.get("dir") == "in")


class CheckerTest(unittest.TestCase):
    def assert_fails(self, csms, wallbox, *fragments):
        res = check("t", CP, csms, wallbox, id_tag=CP)
        text = "\n".join(res.failures)
        self.assertTrue(res.failures, "expected a failure")
        for fragment in fragments:
            self.assertIn(fragment, text)

    def test_good_run_passes(self):
        csms, wallbox = good_logs()
        res = check("t", CP, csms, wallbox, id_tag=CP)
        self.assertEqual(res.failures, [])

    def test_validation_error_fails(self):
        csms, wallbox = good_logs()
        csms.append({"ts": 5.0, "kind": "validation_error", "charger": CP, "action": "MeterValues",
                     "error": "FormatViolationError", "description": "bad", "details": {"cause": "x"}})
        self.assert_fails(csms, wallbox, "validation_error: MeterValues")

    def test_wrong_vendor_fails(self):
        csms, wallbox = good_logs()
        find(csms, "BootNotification")["payload"]["chargePointVendor"] = "Amperfied"
        self.assert_fails(csms, wallbox, "chargePointVendor 'Amperfied'")

    def test_boot_not_first_fails(self):
        csms, wallbox = good_logs()
        csms.insert(2, status(2.05, "early", 1, "Available"))
        self.assert_fails(csms, wallbox, "not BootNotification")

    def test_missing_charging_status_fails(self):
        csms, wallbox = good_logs()
        csms = [r for r in csms if r.get("id") != "s3"]
        self.assert_fails(csms, wallbox, "status sequence")

    def test_meter_start_must_match_register(self):
        csms, wallbox = good_logs()
        find(csms, "StartTransaction")["payload"]["meterStart"] = 999
        self.assert_fails(csms, wallbox, "meterStart 999")

    def test_meter_start_may_be_a_value_served_before_start(self):
        csms, wallbox = good_logs()
        find(csms, "StartTransaction")["payload"]["meterStart"] = 1001
        wallbox.insert(3, {"ts": 4.0, "kind": "energy_served", "energy": 1001})
        self.assertEqual(check("t", CP, csms, wallbox, id_tag=CP).failures, [])

    def test_meter_stop_must_match_register_at_unplug(self):
        csms, wallbox = good_logs()
        find(csms, "StopTransaction")["payload"]["meterStop"] = 1023
        self.assert_fails(csms, wallbox, "meterStop 1023 != energy register at unplug 1024")

    def test_stop_reason_and_transaction_id(self):
        csms, wallbox = good_logs()
        stop = find(csms, "StopTransaction")["payload"]
        stop["reason"] = "Local"
        stop["transactionId"] = 8
        self.assert_fails(csms, wallbox, "reason 'Local'", "transactionId 8, expected 7")

    def test_energy_must_be_integer_wh(self):
        for value, unit, fragment in (("1015.0", "Wh", "not an integer-valued string"),
                                      ("1", "kWh", "unit 'kWh'"),
                                      ("5000", "Wh", "outside [meterStart")):
            csms, wallbox = good_logs()
            sv = find(csms, "MeterValues")["payload"]["meterValue"][0]["sampledValue"][0]
            sv["value"], sv["unit"] = value, unit
            self.assert_fails(csms, wallbox, fragment)

    def test_energy_without_measurand_is_the_default_register(self):
        csms, wallbox = good_logs()
        sv = find(csms, "MeterValues")["payload"]["meterValue"][0]["sampledValue"][0]
        del sv["measurand"]
        sv["value"] = "10.5"
        self.assert_fails(csms, wallbox, "'10.5' is not an integer-valued string")

    def test_no_meter_values_fails(self):
        csms, wallbox = good_logs()
        csms = [r for r in csms if r.get("action") != "MeterValues"]
        self.assert_fails(csms, wallbox, "no MeterValues for transaction 7")

    def test_meter_values_without_energy_fails(self):
        csms, wallbox = good_logs()
        mv = find(csms, "MeterValues")["payload"]["meterValue"][0]
        mv["sampledValue"] = mv["sampledValue"][1:]
        self.assert_fails(csms, wallbox, "carry no Energy.Active.Import.Register")

    def test_limit_not_held_at_off_before_the_transaction_fails(self):
        csms, wallbox = good_logs()
        wallbox[2]["limit_raw"] = 160
        self.assert_fails(csms, wallbox, "not held at off")

    def test_missing_standby_write_fails(self):
        csms, wallbox = good_logs()
        wallbox = [r for r in wallbox if r.get("address") != 257]
        self.assert_fails(csms, wallbox, "standby register 258 = 4")

    def test_refused_write_and_faulted_fail(self):
        csms, wallbox = good_logs()
        wallbox.append({"ts": 5.0, "kind": "write_refused", "address": 261, "value": 170})
        csms.append(status(6.0, "f", 1, "Faulted"))
        self.assert_fails(csms, wallbox, "out-of-range value", "Faulted status")

    def test_two_transactions_fail(self):
        csms, wallbox = good_logs()
        csms.append(copy.deepcopy(find(csms, "StartTransaction")))
        self.assert_fails(csms, wallbox, "2 StartTransaction messages")

    def test_scenario_not_completed(self):
        csms, wallbox = good_logs()
        csms = csms[:7]
        wallbox = wallbox[:2]
        self.assert_fails(csms, wallbox, "never plugged", "never unplugged", "0 StartTransaction")

    def test_empty_logs_fail(self):
        self.assert_fails([], [], "never connected", "no BootNotification")


if __name__ == "__main__":
    unittest.main()
