"""Everything about a circuit that can be checked before a market is opened for it.

`operator market create` runs `check_circuit` before it sends anything: the keys and the
witness generator belong to one circuit, the public signals are named in the order the
proving system puts them, the sample proves and the verifier's own code accepts it, and the
binding holds (a proof made for one prover's address fails for another's, and the outputs
do not depend on the address, so a task's statement can be fixed when it is posted). Each
failure is one `CircuitError` line naming the manifest and the field to fix.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from provingmarket.proving.backends import BackendError, ProofResult, ProvingBackend
from provingmarket.proving.circuits import Circuit, CircuitError
from provingmarket.proving.witness import WitnessError

ProofCheck = Callable[[bytes, list[int]], bool]

# snarkjs's zkey: section 1 names the protocol, section 2 holds its header.
ZKEY_PROTOCOLS = {1: "groth16", 2: "plonk", 10: "fflonk"}
# Two addresses that no sample names: the address signal is set to each in turn.
PROBE_ADDRESSES = (0x5EED000000000000000000000000000000000001, 0x5EED000000000000000000000000000000000002)


@dataclass(frozen=True)
class ZkeyHeader:
    protocol: str
    variables: int  # signals the prover's witness must have (PLONK: less its additions)
    public: int


def zkey_header(path: Path) -> ZkeyHeader:
    """The protocol and sizes in a snarkjs proving key's header, read without loading it."""
    try:
        with path.open("rb") as f:
            data = f.read(4096)
            if data[:4] != b"zkey":
                raise CircuitError(f"{path}: not a snarkjs proving key (zkey)")
            (sections,) = struct.unpack_from("<I", data, 8)
            found: dict[int, int] = {}
            offset = 12
            for _ in range(sections):
                f.seek(offset)
                kind, size = struct.unpack("<IQ", f.read(12))
                found[kind] = offset + 12
                offset += 12 + size
                if 1 in found and 2 in found:
                    break
            f.seek(found[1])
            (protocol,) = struct.unpack("<I", f.read(4))
            f.seek(found[2])
            header = f.read(256)
        (n8q,) = struct.unpack_from("<I", header, 0)
        (n8r,) = struct.unpack_from("<I", header, 4 + n8q)
        at = 8 + n8q + n8r
        variables, public, _domain = struct.unpack_from("<III", header, at)
        name = ZKEY_PROTOCOLS.get(protocol, f"protocol {protocol}")
        if name == "plonk":
            (additions,) = struct.unpack_from("<I", header, at + 12)
            variables -= additions
    except (OSError, struct.error, KeyError):
        raise CircuitError(f"{path}: not a snarkjs proving key (zkey), or cut short") from None
    return ZkeyHeader(name, variables, public)


def check_keys(circuit: Circuit) -> None:
    """The proving key is for this proving system and this many public signals, and the
    witness generator computes as many signals as the proving key's circuit has."""
    where = circuit.manifest_file
    if circuit.manifest.files.proving_key is None:
        return
    header = zkey_header(circuit.zkey)
    if header.protocol != circuit.proving_system:
        raise CircuitError(
            f"{where}: files.proving_key: {circuit.zkey.name} is a {header.protocol} key, but "
            f"proving_system is {circuit.proving_system}"
        )
    if header.public != len(circuit.public):
        raise CircuitError(
            f"{where}: public_signals: {len(circuit.public)} are named but {circuit.zkey.name} "
            f"has {header.public}"
        )
    generator = circuit.generator()
    if generator is not None and generator.size() != header.variables:
        raise CircuitError(
            f"{where}: files.witness_generator: {circuit.wasm.name} computes {generator.size()} signals "
            f"but {circuit.zkey.name}'s circuit has {header.variables}: they are not the same circuit"
        )


def check_signal_order(circuit: Circuit, sample: Mapping[str, object]) -> None:
    """The witness generator puts each public input where the manifest names it."""
    generator = circuit.generator()
    if generator is None:
        return
    where = circuit.manifest_file
    signals = circuit.signal_inputs(sample, PROBE_ADDRESSES[0])
    try:
        computed = generator.public_signals(signals, len(circuit.public))
    except WitnessError as error:
        raise CircuitError(f"{where}: sample: the circuit refuses it ({error})") from None
    scalars = {name: value for name, value in signals.items() if isinstance(value, int)}
    for i, (signal, value) in enumerate(zip(circuit.manifest.public_signals, computed, strict=True)):
        if signal.output:
            if value in scalars.values() and signal.name not in scalars:
                named = next(n for n, v in scalars.items() if v == value)
                raise CircuitError(
                    f"{where}: public_signals: {signal.name} (position {i}) is marked an output, but "
                    f"the proof has input {named}'s value there"
                )
            continue
        if scalars.get(signal.name) != value:
            holder = next((n for n, v in scalars.items() if v == value), None)
            said = f"{holder}'s value" if holder else "a computed value (an output?)"
            raise CircuitError(
                f"{where}: public_signals: position {i} is named {signal.name}, but the circuit puts "
                f"{said} there; name them in the proving system's order (outputs first, then the "
                "public inputs as the circuit declares them)"
            )


def check_binding(circuit: Circuit, sample: Mapping[str, object]) -> None:
    """With an address signal, the outputs are the same whoever proves."""
    if circuit.address_signal is None or not circuit.outputs:
        return
    one, two = (circuit.public_inputs(sample, address) for address in PROBE_ADDRESSES)
    for name, a, b in zip(circuit.public, one, two, strict=True):
        if name in circuit.outputs and a != b:
            raise CircuitError(
                f"{circuit.manifest_file}: binding: output {name} depends on the prover's address, so a "
                "task's statement cannot be fixed when it is posted; use commit-reveal or none"
            )


def check_circuit(circuit: Circuit, backend: ProvingBackend, verify: ProofCheck) -> ProofResult:
    """Every check above, then the sample proved by `backend` as the first probe address
    and checked by `verify` (the verifier's own code, run without a transaction): it must
    accept the proof, and refuse it for the second probe address when the circuit binds
    the prover by address. Returns the sample's proof."""
    where = circuit.manifest_file
    sample = circuit.check_inputs(circuit.sample)
    check_keys(circuit)
    check_signal_order(circuit, sample)
    check_binding(circuit, sample)
    prover = f"0x{PROBE_ADDRESSES[0]:040x}"
    try:
        proved = backend.prove(circuit, sample, prover)
    except BackendError as error:
        raise CircuitError(f"{where}: files.proving_key: the sample does not prove ({error})") from None
    if not verify(proved.proof, proved.public_inputs):
        raise CircuitError(
            f"{where}: files.verifying_key: the verifier rejects the sample's proof: "
            f"{circuit.verification_key_file.name} and {circuit.zkey.name} are not keys of one setup"
        )
    if circuit.address_input is not None:
        other = list(proved.public_inputs)
        other[circuit.address_input] = PROBE_ADDRESSES[1]
        if verify(proved.proof, other):
            raise CircuitError(
                f"{where}: address_signal: {circuit.address_signal} is not constrained: a proof made for "
                "one prover's address verifies for any other (add a constraint such as "
                f"{circuit.address_signal}Squared <== {circuit.address_signal} * {circuit.address_signal})"
            )
    return proved
