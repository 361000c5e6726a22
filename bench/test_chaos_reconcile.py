"""The chaos drill's reconciliation (bench/chaos.py `compare`) finds each kind of fault: three
consistent ledgers give zeros, and each planted fault is counted in its category, once.

    python3 -m unittest -v bench/test_chaos_reconcile.py      (ctest chaos.reconcile)
"""

import copy
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import compare  # noqa: E402

P1, P2, P3, P4 = (f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 5))
T1, T2, T3, T4 = (f"10000000-0000-4000-8000-00000000000{i}" for i in range(1, 5))
A1, A2, A3, A4, A5 = (f"20000000-0000-4000-8000-00000000000{i}" for i in range(1, 6))


def charge(pid, amount, status="COMPLETED", rid=None):
    return {"request_id": rid or "c-" + pid, "operation": "payment", "status": status,
            "amount_minor": str(amount), "payment_id": pid}


def reversal(pid, amount, rid=None):
    return {"request_id": rid or "r-" + pid, "operation": "reversal", "status": "COMPLETED",
            "amount_minor": str(amount), "payment_id": pid}


def told_payment(token, amount, **kw):
    p = {"token": token, "amount": amount, "accepted": False, "cancelled": False, "reverse": False, "refunds": 0}
    p.update(kw)
    return p


class ReconcileTest(unittest.TestCase):
    def setUp(self):
        # P1 completed then refunded in two parts (reversed), P2 cancelled before accept,
        # P3 declined, P4 completed then fully reversed by a cancel.
        self.told = {
            "creates": {T1: {"amount": 1000, "ids": {P1}}, T2: {"amount": 500, "ids": {P2}},
                        T3: {"amount": 700, "ids": {P3}}, T4: {"amount": 900, "ids": {P4}}},
            "payments": {P1: told_payment(T1, 1000, accepted=True, refunds=1000),
                         P2: told_payment(T2, 500, cancelled=True),
                         P3: told_payment(T3, 700, accepted=True),
                         P4: told_payment(T4, 900, accepted=True, reverse=True)},
            "actions": {A1: (P1, "accept"), A2: (P1, "refund"), A3: (P2, "cancel"), A4: (P3, "accept"),
                        A5: (P4, "accept")},
            "replays_differing": 0,
        }
        self.db = {
            P1: {"status": "reversed", "amount": 1000, "captured": 1000, "refunded": 1000, "reversal_requested": False},
            P2: {"status": "cancelled", "amount": 500, "captured": 0, "refunded": 0, "reversal_requested": False},
            P3: {"status": "declined", "amount": 700, "captured": 0, "refunded": 0, "reversal_requested": False},
            P4: {"status": "reversed", "amount": 900, "captured": 900, "refunded": 900, "reversal_requested": True},
        }
        self.events = [[P1, "create", T1], [P1, "accept", A1], [P1, "refund", A2], [P1, "reversal_completed", ""],
                       [P2, "create", T2], [P2, "cancel", A3], [P3, "create", T3], [P3, "accept", A4],
                       [P4, "create", T4], [P4, "accept", A5]]
        self.tasks, self.ops = [], []
        self.ledger = {"operations": [charge(P1, 1000), reversal(P1, 1000), charge(P3, 700, "DECLINED"),
                                      charge(P4, 900), reversal(P4, 900)]}

    def run_compare(self):
        return compare(self.told, self.db, self.events, self.tasks, self.ops, self.ledger)

    def assertOnly(self, category, n=1):
        cat, why = self.run_compare()
        counts = {k: cat[k] for k in ("lost", "duplicated", "double-charged", "stuck", "amounts mismatched")}
        expected = {k: 0 for k in counts}
        expected[category] = n
        self.assertEqual(counts, expected, why)
        return why

    def test_consistent_ledgers_give_zeros(self):
        cat, why = self.run_compare()
        self.assertEqual(why, [])
        self.assertEqual(cat["created"], 4)
        self.assertEqual(cat["untold rows"], 0)

    def test_a_told_payment_without_a_row_is_lost(self):
        del self.db[P2]
        self.events = [e for e in self.events if e[0] != P2]
        self.assertIn("has no row", self.assertOnly("lost")[0])

    def test_a_told_action_missing_from_the_history_is_lost(self):
        self.events.remove([P2, "cancel", A3])
        self.db[P2]["status"] = "created"
        why = self.run_compare()[1]
        self.assertEqual(self.run_compare()[0]["lost"], 1, why)

    def test_a_charge_of_an_unknown_payment_is_lost(self):
        self.ledger["operations"].append(charge("ffffffff-0000-4000-8000-000000000000", 100))
        self.assertOnly("lost")

    def test_two_rows_for_one_token_are_duplicated(self):
        extra = "00000000-0000-4000-8000-0000000000ff"
        self.events.append([extra, "create", T2])
        self.db[extra] = dict(self.db[P2], status="created")
        self.assertOnly("duplicated")

    def test_two_ids_told_for_one_token_are_duplicated(self):
        self.told["creates"][T3]["ids"].add("00000000-0000-4000-8000-0000000000ee")
        self.assertOnly("duplicated")

    def test_an_action_twice_in_the_history_is_duplicated(self):
        self.events.append([P1, "refund", A2])
        self.assertOnly("duplicated")

    def test_a_second_charge_is_double_charged(self):
        self.ledger["operations"].append(charge(P4, 900, rid="again"))
        cat, why = self.run_compare()
        self.assertEqual(cat["double-charged"], 1, why)
        self.assertEqual((cat["lost"], cat["duplicated"], cat["stuck"]), (0, 0, 0), why)
        self.assertEqual(cat["amounts mismatched"], 1, why)    # the capture is not what was charged

    def test_more_reversed_than_charged_is_double_charged(self):
        self.ledger["operations"].append(reversal(P1, 1000, rid="again"))
        cat, why = self.run_compare()
        self.assertEqual(cat["double-charged"], 1, why)

    def test_a_payment_still_processing_is_stuck(self):
        self.told["payments"][P3]["accepted"] = True
        self.db[P3]["status"] = "bank_processing"
        self.ledger["operations"].remove(charge(P3, 700, "DECLINED"))
        self.assertOnly("stuck")

    def test_open_tasks_and_operations_are_stuck(self):
        self.tasks = [[P1, "sky_technologies_integration_process_payment_reversal", "dead"]]
        self.ops = [[P4, "reversal", "unknown"]]
        self.assertOnly("stuck", 2)

    def test_a_capture_the_sandbox_did_not_charge_is_mismatched(self):
        self.db[P4]["captured"] = 1800
        self.db[P4]["refunded"] = 1800
        cat, why = self.run_compare()
        self.assertEqual(cat["amounts mismatched"], 1, why)

    def test_another_amount_is_mismatched(self):
        self.db[P2]["amount"] = 501
        self.assertOnly("amounts mismatched")

    def test_a_refund_told_but_not_reserved_is_mismatched(self):
        self.told["payments"][P1]["refunds"] = 1001
        self.assertOnly("amounts mismatched")

    def test_a_charge_of_a_cancelled_payment_is_mismatched(self):
        self.ledger["operations"].append(charge(P2, 500))
        self.assertEqual(self.run_compare()[0]["amounts mismatched"], 1)

    def test_a_replay_with_another_answer_is_duplicated(self):
        self.told["replays_differing"] = 1
        self.assertOnly("duplicated")

    def test_inputs_are_not_changed(self):
        before = copy.deepcopy((self.told, self.db, self.events, self.ledger))
        self.run_compare()
        self.assertEqual((self.told, self.db, self.events, self.ledger), before)


if __name__ == "__main__":
    unittest.main()
