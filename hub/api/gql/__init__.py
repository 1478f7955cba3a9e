"""The command centre's GraphQL API (design §8): schema, resolvers, roles, limits, live changes.

Wiring (ops): build an :class:`ApiContext` from the read models, NATS connection and configuration,
add :func:`graphql_routes` to the HTTP app, and set the projector's ``on_commit`` to
:func:`commit_publisher` so subscriptions in every API process see each projection commit.
"""

from hub.api.gql.app import HubGraphQL, graphql_routes
from hub.api.gql.auth import Principal, TokenBook
from hub.api.gql.context import ApiContext, DepartmentInfo, Limits
from hub.api.gql.live import COMMITTED_SUBJECT, commit_publisher

__all__ = [
    "COMMITTED_SUBJECT",
    "ApiContext",
    "DepartmentInfo",
    "HubGraphQL",
    "Limits",
    "Principal",
    "TokenBook",
    "commit_publisher",
    "graphql_routes",
]
