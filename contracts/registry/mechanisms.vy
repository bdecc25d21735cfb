# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title Assignment mechanisms
@notice Anyone registers a mechanism with the frontend addresses that may assign for
        it; a requester names the mechanism it trusts with each task and a prover
        names the mechanisms it accepts, so a new mechanism needs no permission and a
        bad one touches only those who chose it. Two are built in and need no
        frontend: OPEN_RACE and DUTCH.
"""

from . import reasons
from . import words

# ------------------------------------------------------------------ constants

MAX_FRONTENDS: constant(uint256) = 16  # frontends set in one call
MAX_NAME: constant(uint256) = 64  # characters

# Built-in mechanisms; registered mechanisms are numbered from 3.
OPEN_RACE: constant(uint256) = 1
DUTCH: constant(uint256) = 2

RETIRED: constant(uint256) = 1 << 160

# A fallback chain (docs/mechanisms.md): a task's mechanism_id from CHAIN up holds up to
# MAX_LINKS links in order, link i in bits 64 * (i + 1) up: its mechanism (32 bits) and its
# window in seconds << 32 (32 bits). The low 64 bits are zero. The links' windows follow
# one another from posting and add up to the task's assignment window; which mechanism may
# take a slot at a moment is `link_at` of the terms alone, so moving on needs no transaction.
CHAIN: constant(uint256) = 1 << 64
MAX_LINKS: constant(uint256) = 3

# ------------------------------------------------------------------ public state

mechanism_count: public(uint256)  # the last id handed out; 1 and 2 are built in

# ------------------------------------------------------------------ internal state

_mechanisms: HashMap[uint256, uint256]  # registrant | retired << 160
_frontends: HashMap[uint256, HashMap[address, bool]]

# ------------------------------------------------------------------ events


event MechanismRegistered:
    mechanism_id: indexed(uint256)
    registrant: indexed(address)
    name: String[MAX_NAME]


event FrontendSet:
    mechanism_id: indexed(uint256)
    frontend: indexed(address)
    allowed: bool


event MechanismRetired:
    mechanism_id: indexed(uint256)


@deploy
def __init__():
    self.mechanism_count = DUTCH


# ------------------------------------------------------------------ external


@external
def register_mechanism(name: String[MAX_NAME], frontends: DynArray[address, MAX_FRONTENDS]) -> uint256:
    """
    @notice Register an assignment mechanism. Anyone may; the sender manages it.
    @param name A readable name, carried in the event.
    @param frontends Addresses allowed to assign tasks that name this mechanism.
    @return The mechanism's id.
    """
    mechanism_id: uint256 = self.mechanism_count + 1
    self.mechanism_count = mechanism_id
    self._mechanisms[mechanism_id] = convert(msg.sender, uint256)
    log MechanismRegistered(mechanism_id=mechanism_id, registrant=msg.sender, name=name)
    for frontend: address in frontends:
        self._frontends[mechanism_id][frontend] = True
        log FrontendSet(mechanism_id=mechanism_id, frontend=frontend, allowed=True)
    return mechanism_id


@external
def set_frontend(mechanism_id: uint256, frontend: address, allowed: bool):
    """
    @notice Allow or forbid a frontend to assign for a mechanism.
    @param mechanism_id The mechanism; only its registrant may.
    @param frontend The frontend's address.
    @param allowed True to allow.
    """
    self._only_registrant(mechanism_id)
    self._frontends[mechanism_id][frontend] = allowed
    log FrontendSet(mechanism_id=mechanism_id, frontend=frontend, allowed=allowed)


@external
def retire_mechanism(mechanism_id: uint256):
    """
    @notice Retire a mechanism for good: no new task may name it. Tasks already
            posted may still be assigned by the frontends it keeps, so their
            requesters are served; remove frontends with `set_frontend` to stop that.
    @param mechanism_id The mechanism; only its registrant may.
    """
    self._only_registrant(mechanism_id)
    self._mechanisms[mechanism_id] = self._mechanisms[mechanism_id] | RETIRED
    log MechanismRetired(mechanism_id=mechanism_id)


@view
@external
def mechanism(mechanism_id: uint256) -> (address, bool):
    """
    @notice A registered mechanism's registrant and whether it is retired.
    @param mechanism_id The mechanism.
    @return (registrant, retired); an unknown mechanism has an empty registrant.
    """
    word: uint256 = self._mechanisms[mechanism_id]
    return words.to_address(word), word & RETIRED != 0


@view
@external
def is_frontend(mechanism_id: uint256, frontend: address) -> bool:
    """
    @notice Whether an address may assign for a mechanism.
    @param mechanism_id The mechanism.
    @param frontend The address.
    @return True if allowed.
    """
    return self._frontends[mechanism_id][frontend]


# ------------------------------------------------------------------ internal


@view
@internal
def postable(mechanism_id: uint256) -> uint256:
    """
    @dev Why a new task may not name this registered mechanism, or "".
    """
    word: uint256 = self._mechanisms[mechanism_id]
    if word == 0:
        return reasons.UNKNOWN_MECHANISM
    if word & RETIRED != 0:
        return reasons.MECHANISM_RETIRED
    return reasons.OK


@pure
@internal
def link_at(links: uint256, posted_at: uint256, at: uint256) -> uint256:
    """
    @dev The link of a chain current at `at` (from posting or after the previous link's
         end, up to and with its own end), as end << 64 | window << 32 | mechanism; 0 once
         the last link is over. A chain was bounded at post: no sum here overflows.
         assignments._assign finds the current link the same way, unrolled (the hot path);
         tests/chain/registry/test_chains.py checks both against provingmarket/rules.py.
    """
    end: uint256 = posted_at
    word: uint256 = links >> 64
    for i: uint256 in range(MAX_LINKS):
        end = unsafe_add(end, (word >> 32) & words.MASK32)  # a timestamp plus 3 x 32 bits
        if at <= end:
            return end << 64 | word & words.MASK64
        word = word >> 64
    return 0


@view
@internal
def allows(mechanism_id: uint256, frontend: address) -> bool:
    return self._frontends[mechanism_id][frontend]


@view
@internal
def _only_registrant(mechanism_id: uint256):
    word: uint256 = self._mechanisms[mechanism_id]
    if word == 0:
        reasons.fail(reasons.UNKNOWN_MECHANISM)
    if words.to_address(word) != msg.sender:
        reasons.fail(reasons.NOT_REGISTRANT)
