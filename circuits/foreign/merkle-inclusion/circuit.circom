pragma circom 2.0.0;

// Merkle inclusion: "I know a leaf and a path of Poseidon(left, right) hashes from it to
// root", in a binary tree of depth 8 (256 leaves), from circomlib's Poseidon and Switcher.
// Public signals: root (output). No address input: the binding is commit-reveal.
// pathIndices[i] is 1 when the node at level i is a right child (its sibling,
// pathElements[i], on the left), 0 when it is a left child. Switcher does not constrain
// its selector, so each index is constrained to 0 or 1 here: with any other value the
// hashed pair would be a blend of the two nodes, not the tree's.
include "circomlib/circuits/poseidon.circom";
include "circomlib/circuits/switcher.circom";

template MerkleInclusion(depth) {
    signal input leaf;
    signal input pathElements[depth];
    signal input pathIndices[depth];
    signal output root;

    signal node[depth + 1];
    component order[depth];
    component hash[depth];

    node[0] <== leaf;
    for (var i = 0; i < depth; i++) {
        pathIndices[i] * (pathIndices[i] - 1) === 0;

        order[i] = Switcher();
        order[i].sel <== pathIndices[i];
        order[i].L <== node[i];
        order[i].R <== pathElements[i];

        hash[i] = Poseidon(2);
        hash[i].inputs[0] <== order[i].outL;
        hash[i].inputs[1] <== order[i].outR;
        node[i + 1] <== hash[i].out;
    }
    root <== node[depth];
}

component main = MerkleInclusion(8);
