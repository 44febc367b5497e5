"""Contracts the CRM reports: signed (closed-won), renewed, cancelled."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from services.registration.api.common import App, Crm, CustomerBody, Now, Reader, rule_problem
from services.registration.application import NewContract
from services.registration.domain.contracts import DEFAULT_TERM_MONTHS, Contract, contract_end
from services.registration.domain.engagement import RegistrationRuleError
from shared.auth import Allow, Principal, Role
from shared.edge import RequestModel
from shared.money import Amount, MoneyBody
from shared.problems import Problem, problems
from shared.program_dates import LAST_DAY, in_program

contracts = APIRouter(prefix="/v1/contracts", tags=["contracts"])


class ContractRequest(RequestModel):
    model_config = ConfigDict(
        # what _names_customer says: not both left out (or null)
        json_schema_extra={
            "not": {
                "properties": {"registration_id": {"type": "null"}, "customer": {"type": "null"}}
            }
        }
    )

    registration_id: UUID | None = Field(default=None, description="The registration it wins")
    partner_id: UUID | None = Field(default=None, description="None for a direct deal")
    customer: CustomerBody | None = Field(
        default=None, description="Required unless a registration is named"
    )
    start_date: date
    term_months: int = Field(default=DEFAULT_TERM_MONTHS, ge=1, le=120)
    mrr: MoneyBody = Field(description="Recurring amount per month")
    one_time: MoneyBody | None = None
    external_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="CRM id; unique"
    )

    @field_validator("term_months")
    @classmethod
    def _ends_in_program(cls, term_months: int, info: ValidationInfo) -> int:
        start = info.data.get("start_date")
        if start is not None and in_program(start):
            end = contract_end(start, term_months)
            if not in_program(end):
                raise PydanticCustomError(
                    "term_outside_program",
                    "a term of {months} months from {start} ends on {end}, after {last}",
                    {
                        "months": term_months,
                        "start": start.isoformat(),
                        "end": end.isoformat(),
                        "last": LAST_DAY.isoformat(),
                    },
                )
        return term_months

    @model_validator(mode="after")
    def _names_customer(self) -> ContractRequest:
        if self.registration_id is None and self.customer is None:
            raise ValueError("name the customer, or the registration the contract wins")
        return self

    def command(self) -> NewContract:
        return NewContract(
            customer=self.customer.to_customer() if self.customer else None,
            partner_id=self.partner_id,
            registration_id=self.registration_id,
            start_date=self.start_date,
            term_months=self.term_months,
            mrr=self.mrr.to_money(),
            one_time=self.one_time.to_money() if self.one_time else None,
            external_id=self.external_id,
        )


class ContractView(BaseModel):
    contract_id: UUID
    customer_key: str
    partner_id: UUID | None
    registration_id: UUID | None
    motion: str | None
    start_date: date
    term_months: int
    end_date: date
    mrr: Amount
    one_time: Amount | None
    external_id: str | None
    renewal_due_on: date
    status: str
    cancelled_on: date | None
    poached: bool
    renewals: int

    @classmethod
    def of(cls, contract: Contract) -> ContractView:
        return cls(
            contract_id=contract.id,
            customer_key=contract.customer_key,
            partner_id=contract.partner_id,
            registration_id=contract.registration_id,
            motion=contract.motion,
            start_date=contract.start_date,
            term_months=contract.term_months,
            end_date=contract.end_date,
            mrr=Amount.of(contract.mrr),
            one_time=Amount.of(contract.one_time) if contract.one_time else None,
            external_id=contract.external_id,
            renewal_due_on=contract.renewal_due_on,
            status=contract.status,
            cancelled_on=contract.cancelled_on,
            poached=contract.poached,
            renewals=contract.renewals,
        )


def _visible(app: App, contract_id: UUID, principal: Principal) -> Contract:
    try:
        contract = app.contract(contract_id)
    except AggregateNotFoundError:
        contract = None
    if contract is None or not principal.may_see_partner(contract.partner_id):
        raise Problem(404, "contract-not-found", f"No contract {contract_id}.")
    return contract


@contracts.post(
    "",
    status_code=201,
    response_model=ContractView,
    summary="Report a contract signed (closed-won)",
    responses=problems(404),
)
async def sign(body: ContractRequest, app: App, now: Now, _: Crm) -> ContractView:
    try:
        contract = await run_in_threadpool(app.sign_contract, body.command(), now)
    except AggregateNotFoundError as error:
        raise Problem(
            404, "registration-not-found", f"No registration {body.registration_id}."
        ) from error
    except RegistrationRuleError as error:
        raise rule_problem(error) from error
    return ContractView.of(contract)


@contracts.get(
    "/by-external-id/{external_id}", response_model=ContractView, summary="A contract by its CRM id"
)
async def contract_by_external_id(external_id: str, app: App, principal: Reader) -> ContractView:
    unknown = Problem(404, "contract-not-found", f"No contract has the CRM id {external_id!r}.")
    try:
        contract_id = await run_in_threadpool(app.by_external_id, "contract", external_id)
        contract = await run_in_threadpool(_visible, app, contract_id, principal)
    except (AggregateNotFoundError, Problem):  # another partner's: its id is not told either
        raise unknown from None
    return ContractView.of(contract)


@contracts.get("/{contract_id}", response_model=ContractView, summary="A contract")
async def get_contract(contract_id: UUID, app: App, principal: Reader) -> ContractView:
    return ContractView.of(await run_in_threadpool(_visible, app, contract_id, principal))


class RenewalRequest(RequestModel):
    term_months: int = Field(default=DEFAULT_TERM_MONTHS, ge=1, le=120)
    mrr: MoneyBody | None = Field(default=None, description="Defaults to the current MRR")
    external_id: str | None = Field(default=None, max_length=200)


class CancellationRequest(RequestModel):
    effective_on: date
    reason: str = Field(default="", max_length=2000)


Renewer = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.CRM))]


@contracts.post(
    "/{contract_id}/renewal",
    response_model=ContractView,
    summary="Renew for a new term, from the day after the current end",
)
async def renew(
    contract_id: UUID, body: RenewalRequest, app: App, now: Now, _: Renewer
) -> ContractView:
    try:
        contract = await run_in_threadpool(
            app.renew_contract,
            contract_id,
            term_months=body.term_months,
            mrr=body.mrr.to_money() if body.mrr else None,
            external_id=body.external_id,
            reported_at=now,
        )
    except (RegistrationRuleError, AggregateNotFoundError) as error:
        raise rule_problem(error) from error
    return ContractView.of(contract)


@contracts.post(
    "/{contract_id}/cancellation",
    response_model=ContractView,
    summary="Cancel before the end of the term",
)
async def cancel(
    contract_id: UUID, body: CancellationRequest, app: App, now: Now, _: Renewer
) -> ContractView:
    try:
        contract = await run_in_threadpool(
            app.cancel_contract,
            contract_id,
            effective_on=body.effective_on,
            reason=body.reason,
            reported_at=now,
        )
    except (RegistrationRuleError, AggregateNotFoundError) as error:
        raise rule_problem(error) from error
    return ContractView.of(contract)
