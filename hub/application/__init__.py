"""Use cases of the hub (用例): apply canonical events to cases, in batches, and watch deadlines.

One concept per module, each building on the one before: ``ports`` (what the use cases need and
offer: the Ledger, DomainConfig, GridResolver, the notification log), ``outcome`` (what deciding an
event came to), ``cases`` (the Application, the case cache, the commit), ``policies`` (deadlines,
grids, routing 权责清单, links and referrals), ``commands`` (one handler per closed-loop step),
``batch`` (deciding a batch; isolating a failing event), ``deadlines`` (the deadline watch 督办)
and ``ledger`` (``CaseLedger``, all of them together). No adapter is imported here and no
environment variable is read: ``ops.bootstrap.build_ledger`` wires the ledger to its
configuration, its privacy sealing and its log follower.
"""

from hub.application.batch import SYSTEMIC_FAILURE_BATCH as SYSTEMIC_FAILURE_BATCH
from hub.application.batch import is_infrastructure as is_infrastructure
from hub.application.deadlines import WATCHER_ACTOR as WATCHER_ACTOR
from hub.application.ledger import CaseLedger as CaseLedger
from hub.application.outcome import Outcome as Outcome
from hub.application.outcome import Verdict as Verdict
from hub.application.policies import SYSTEM_ACTOR as SYSTEM_ACTOR
from hub.application.ports import DomainConfig as DomainConfig
