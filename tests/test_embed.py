"""Electrolyte mixture embeddings (opir.embed): structures, the three methods, mixtures, bad input, the rules."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, TEST_CONFIG, run_snakemake

import opir.embed.encoders
import opir.embed.mixture
import opir.embed.molecules
from opir.core.config import Recipe, parse_recipe
from opir.core.errors import ConfigError
from opir.embed.encoders import (
    N_DESCRIPTORS,
    SpeciesEmbeddings,
    descriptor3d_embedding,
    molecule_embeddings,
    morgan_embedding,
    unimol_embedding,
)
from opir.embed.mixture import embed_recipe, embed_systems, mixture_embedding
from opir.embed.molecules import (
    EMBED_DIM,
    MIXTURE_DIM,
    UNIMOL_DICT_FILE,
    UNIMOL_WEIGHT_FILE,
    EmbedSettings,
    build_geometry,
    check_recipe,
    geometry_path,
    load_embedding_inputs,
    load_or_build_geometry,
    split_species,
)
from opir.formats.embeddings import read_mixture_embeddings

SYSTEMS = REPO / "config" / "systems.tsv"
MOLECULES = REPO / "config" / "molecules.tsv"
SETTINGS = EmbedSettings()
UNIMOL_DICT = "[PAD] [CLS] [SEP] [UNK] C N O S H Cl F Br I Si P B Na K Al Ca Sn As Hg Fe Zn Cr Se Gd Au Li".split()


def write_sheet(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def molecules_rows(**smiles_override) -> list[dict]:
    rows = pd.read_csv(MOLECULES, sep="\t", dtype=str, keep_default_na=False).to_dict("records")
    for row in rows:
        row["smiles"] = smiles_override.get(row["name"], row["smiles"])
    return rows


def systems_rows(**electrolyte_override) -> list[dict]:
    rows = pd.read_csv(SYSTEMS, sep="\t", dtype=str, keep_default_na=False).to_dict("records")
    for row in rows:
        row["electrolyte"] = electrolyte_override.get(row["system_id"], row["electrolyte"])
    return rows


# ---- structures -------------------------------------------------------------------------------------------------
def test_salt_is_split_into_ions_with_stoichiometry():
    species = split_species("LiPF6", "[Li+].F[P-](F)(F)(F)(F)F", "salt", "here")
    assert [(s.key, s.smiles, s.count) for s in species] == [
        ("LiPF6__Li+", "[Li+]", 1),
        ("LiPF6__F6P-", "F[P-](F)(F)(F)(F)F", 1),
    ]
    li2so4 = split_species("Li2SO4", "[Li+].[Li+].[O-]S(=O)(=O)[O-]", "salt", "here")
    assert sorted(s.count for s in li2so4) == [1, 2]


def test_pf6_template_is_an_octahedron_and_li_sits_at_the_origin():
    mol, source = build_geometry("F[P-](F)(F)(F)(F)F", SETTINGS)
    assert source == "template:octahedral"
    xyz = mol.GetConformer().GetPositions()
    p = next(a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "P")
    bonds = np.delete(xyz, p, axis=0) - xyz[p]
    assert np.allclose(np.linalg.norm(bonds, axis=1), 1.60)
    cosines = (bonds @ bonds.T) / 1.60**2
    off_diagonal = cosines[~np.eye(6, dtype=bool)]
    assert np.sum(np.isclose(off_diagonal, -1.0)) == 6  # three trans pairs, counted both ways
    assert np.sum(np.isclose(off_diagonal, 0.0)) == 24  # every other pair at 90 degrees

    li, source = build_geometry("[Li+]", SETTINGS)
    assert source == "single_atom:origin" and li.GetNumAtoms() == 1
    assert np.allclose(li.GetConformer().GetPositions(), 0.0)


def test_etkdg_geometry_is_reproducible_and_optimized():
    first, source = build_geometry("C1COC(=O)O1", SETTINGS)
    second, _ = build_geometry("C1COC(=O)O1", SETTINGS)
    assert source == "etkdg_v3+mmff94" and first.GetNumAtoms() == 10  # hydrogens are explicit
    assert np.allclose(first.GetConformer().GetPositions(), second.GetConformer().GetPositions())
    other, _ = build_geometry("CCOC(=O)OC", EmbedSettings(conformer_seed=7))
    assert other.GetNumAtoms() == 15


def test_geometry_cache_is_reused_and_invalidated_by_settings(tmp_path):
    species = split_species("EC", "C1COC(=O)O1", "solvent", "here")[0]
    mol, _ = load_or_build_geometry(species, SETTINGS, tmp_path)
    path = geometry_path(tmp_path, species)
    stamp = path.stat().st_mtime_ns
    cached, _ = load_or_build_geometry(species, SETTINGS, tmp_path)
    assert path.stat().st_mtime_ns == stamp  # read, not rewritten
    assert np.array_equal(mol.GetConformer().GetPositions(), cached.GetConformer().GetPositions())
    # without a cache the structure is rounded the same way, so it embeds identically
    fresh, _ = load_or_build_geometry(species, SETTINGS, None)
    assert np.array_equal(fresh.GetConformer().GetPositions(), cached.GetConformer().GetPositions())
    load_or_build_geometry(species, EmbedSettings(conformer_seed=1), tmp_path)
    assert path.stat().st_mtime_ns != stamp  # other seed: rebuilt


# ---- species embeddings -----------------------------------------------------------------------------------------
def test_descriptor3d_fallback_is_fixed_size_finite_and_seeded():
    mols = [build_geometry(s, SETTINGS)[0] for s in ("[Li+]", "[Na+]", "F[P-](F)(F)(F)(F)F", "C1COC(=O)O1")]
    emb, raw = descriptor3d_embedding(mols, SETTINGS)
    assert emb.shape == (4, EMBED_DIM) and emb.dtype == np.float32
    assert raw.shape == (4, N_DESCRIPTORS) == (4, 984 + 28)
    assert np.isfinite(emb).all() and np.isfinite(raw).all()
    assert not np.allclose(emb[0], emb[1])  # single atoms: the composition block separates Li+ from Na+
    again, _ = descriptor3d_embedding(mols, SETTINGS)
    assert np.array_equal(emb, again)
    other, _ = descriptor3d_embedding(mols, EmbedSettings(projection_seed=1))
    assert not np.allclose(emb, other)
    # a Gaussian projection keeps distances roughly: compare with the transformed descriptors
    d_raw = np.linalg.norm(np.arcsinh(raw[2]) - np.arcsinh(raw[3]))
    assert 0.5 < np.linalg.norm(emb[2] - emb[3]) / d_raw < 1.5


def test_morgan_variant_counts_substructures():
    emb = morgan_embedding(["C1COC(=O)O1", "COC(=O)OC", "[Li+]"], SETTINGS)
    assert emb.shape == (3, EMBED_DIM)
    assert emb[0].sum() > emb[2].sum() >= 1  # counts, not bits
    assert not np.array_equal(emb[0], emb[1])


# ---- mixtures ---------------------------------------------------------------------------------------------------
def test_mixture_embedding_is_salt_weighted_solvents_and_molarity():
    e = {name: np.full(EMBED_DIM, value, np.float32) for name, value in [("S", 5.0), ("A", 1.0), ("B", 2.0)]}
    c = mixture_embedding(parse_recipe("S:1.2M; A:3; B:1"), e)
    assert c.shape == (MIXTURE_DIM,) == (1025,) and c.dtype == np.float32
    assert np.allclose(c[:512], 5.0)
    assert np.allclose(c[512:1024], 0.75 * 1.0 + 0.25 * 2.0)  # proportions normalized
    assert c[1024] == pytest.approx(1.2)
    one_molar = mixture_embedding(parse_recipe("S:1.0M; A:3; B:1"), e)
    assert np.array_equal(c[:1024], one_molar[:1024]) and c[1024] != one_molar[1024]  # only the molarity tells


def test_salt_embedding_is_the_mean_of_its_ions():
    species = split_species("LiPF6", "[Li+].F[P-](F)(F)(F)(F)F", "salt", "here")
    vectors = np.array([np.full(512, 1.0), np.full(512, 3.0)], np.float32)
    result = molecule_embeddings(SpeciesEmbeddings(species, vectors, ["x", "x"], None))
    assert np.allclose(result["LiPF6"], 2.0)


@pytest.mark.parametrize("variant, method", [("3d", "descriptor3d"), ("smiles", "morgan")])
def test_embed_systems_writes_the_contract_and_matches_embed_recipe(tmp_path, variant, method):
    out = tmp_path / f"mixture_{variant}.h5"
    geometries = tmp_path / "geometries"
    embed_systems(SYSTEMS, MOLECULES, out, variant, SETTINGS, geometries, config_slice={"x": 1})
    with h5py.File(out) as h5:
        ids = list(h5["system_id"].asstr()[()])
        assert h5.attrs["method"] == method and not h5.attrs["unimol_weights_used"]
        if variant == "3d":
            assert "NOT used" in h5.attrs["embedding_statement"]
            assert len(h5["species/descriptors_3d"]) == 6
        assert h5["mixture_embedding"].shape == (10, 1025) and h5["mixture_embedding"].dtype == np.float32
        assert json.loads(h5.attrs["feature_layout"])["salt_molarity_mol_per_l"] == [1024, 1025]
        assert list(h5["molecules/name"].asstr()[()]) == ["LiPF6", "EC", "DMC", "EMC", "VC"]
        assert h5.attrs["producer_rule"] == "embed_mixture"
    assert ids == pd.read_csv(SYSTEMS, sep="\t")["system_id"].tolist()
    table = read_mixture_embeddings(out)
    assert table["cu_ec12"][-1] == pytest.approx(1.2) and table["cu_lp30"][-1] == pytest.approx(1.0)
    assert np.array_equal(table["cu_lp30"], table["sn_lp30"])  # same electrolyte, same condition
    assert not np.allclose(table["cu_lp30"], table["cu_lp30_vc"])
    molecules = pd.read_csv(MOLECULES, sep="\t")
    again = embed_recipe("LiPF6:1.2M; EC:1", molecules, SETTINGS, variant, geometries)
    assert np.array_equal(again, table["cu_ec12"])
    by_smiles = embed_recipe("[Li+].F[P-](F)(F)(F)(F)F:1.2M; C1COC(=O)O1:1", None, SETTINGS, variant)
    assert np.array_equal(by_smiles, table["cu_ec12"])


# ---- bad input: clear errors naming the row, before any embedding work --------------------------------------------
@pytest.fixture
def no_embedding_work(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("embedding work started before the inputs were checked")

    monkeypatch.setattr(opir.embed.mixture, "embed_species", forbidden)
    monkeypatch.setattr(opir.embed.encoders, "load_or_build_geometry", forbidden)
    monkeypatch.setattr(opir.embed.molecules, "load_or_build_geometry", forbidden)


def test_bad_smiles_names_the_row(tmp_path, no_embedding_work):
    molecules = write_sheet(tmp_path / "molecules.tsv", molecules_rows(EMC="CCOC(=O)O(C"))
    with pytest.raises(ConfigError, match=r"molecules.tsv: row 5 \(EMC\), column smiles: SMILES 'CCOC\(=O\)O\(C'"):
        embed_systems(SYSTEMS, molecules, tmp_path / "out.h5", "3d", SETTINGS, tmp_path / "g")
    assert not (tmp_path / "out.h5").exists()


def test_unknown_molecule_names_the_system_row(tmp_path, no_embedding_work):
    systems = write_sheet(tmp_path / "systems.tsv", systems_rows(cu_emc="LiPF6:1.0M; FEC:1"))
    with pytest.raises(ConfigError, match=r"systems.tsv: row 8 \(cu_emc\).*FEC not in the molecule sheet"):
        embed_systems(systems, MOLECULES, tmp_path / "out.h5", "smiles", SETTINGS)


def test_proportions_not_positive_name_the_system_row(tmp_path, no_embedding_work):
    systems = write_sheet(tmp_path / "systems.tsv", systems_rows(cu_dmc="LiPF6:1.0M; EC:0; DMC:0"))
    with pytest.raises(ConfigError, match=r"systems.tsv: row 2 \(cu_dmc\).*do not add up to a positive number"):
        embed_systems(systems, MOLECULES, tmp_path / "out.h5", "3d", SETTINGS)
    with pytest.raises(ConfigError, match="do not add up to a positive number"):
        check_recipe(Recipe(salts={}, components={"EC": 0.0}), pd.read_csv(MOLECULES, sep="\t"), "r")


def test_salt_written_as_one_neutral_molecule_is_refused(tmp_path, no_embedding_work):
    molecules = write_sheet(tmp_path / "molecules.tsv", molecules_rows(LiPF6="[Li]F"))
    with pytest.raises(ConfigError, match=r"row 2 \(LiPF6\).*charge-balanced, dot-separated ions"):
        load_embedding_inputs(SYSTEMS, molecules)


def test_recipe_with_unknown_name_that_is_not_smiles():
    with pytest.raises(ConfigError, match="'XYZ' is neither a known molecule"):
        embed_recipe("LiPF6:1M; XYZ:1", pd.read_csv(MOLECULES, sep="\t"), SETTINGS, "smiles")


# ---- UniMol: the real code path with weights made here -------------------------------------------------------------
def make_unimol_weights(folder: Path, seed: int) -> Path:
    """A UNIMOL_WEIGHT_DIR with the real dictionary and a Uni-Core style checkpoint ({'args', 'model'}) holding a
    random token embedding; every parameter it lacks keeps the (seeded) random initialization."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / UNIMOL_DICT_FILE).write_text("\n".join(UNIMOL_DICT) + "\n")
    tokens = torch.randn(len(UNIMOL_DICT) + 1, EMBED_DIM, generator=torch.Generator().manual_seed(seed))
    checkpoint = {"args": argparse.Namespace(arch="unimol_base"), "model": {"embed_tokens.weight": tokens}}
    torch.save(checkpoint, folder / UNIMOL_WEIGHT_FILE)
    return folder


def test_unimol_embeddings_from_a_local_weight_folder(tmp_path, monkeypatch):
    import huggingface_hub

    def no_download(*args, **kwargs):
        raise AssertionError("a hub download was attempted")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_download)
    monkeypatch.chdir(tmp_path)  # unimol-tools must not leave ./logs behind
    settings = EmbedSettings(unimol_weight_dir=str(make_unimol_weights(tmp_path / "weights", 1)))
    out = tmp_path / "mixture_3d.h5"
    embed_systems(SYSTEMS, MOLECULES, out, "3d", settings, tmp_path / "geometries")
    assert not (tmp_path / "logs").exists()
    with h5py.File(out) as h5:
        assert h5.attrs["method"] == "unimol" and h5.attrs["unimol_weights_used"]
        assert "UniMol weights used" in h5.attrs["embedding_statement"]
        species = h5["species/embedding"][()]
        table = dict(zip(h5["system_id"].asstr()[()], h5["mixture_embedding"][()], strict=True))
    assert species.shape == (6, 512) and np.isfinite(species).all()
    assert len({tuple(np.round(row, 4)) for row in species}) == 6  # every structure has its own embedding
    # same space for a single recipe (other batch composition: equal up to float32 round-off)
    single = embed_recipe(
        "LiPF6:1.2M; EC:1", pd.read_csv(MOLECULES, sep="\t"), settings, "3d", tmp_path / "geometries"
    )
    assert np.allclose(single, table["cu_ec12"], atol=1e-4)
    # the checkpoint's weights are really used: another token embedding gives other embeddings
    other = EmbedSettings(unimol_weight_dir=str(make_unimol_weights(tmp_path / "other", 2)))
    mols = [build_geometry(smiles, SETTINGS)[0] for smiles in ("[Li+]", "C1COC(=O)O1")]
    assert np.allclose(unimol_embedding(mols, settings), species[[0, 2]], atol=1e-4)
    assert not np.allclose(unimol_embedding(mols, other), species[[0, 2]], atol=1e-3)


def test_missing_unimol_weights_fail_clearly_without_download(tmp_path, monkeypatch):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / UNIMOL_DICT_FILE).write_text("[PAD]\n")
    settings = EmbedSettings(unimol_weight_dir=str(tmp_path / "weights"))
    with pytest.raises(ConfigError, match=f"lacks {UNIMOL_WEIGHT_FILE}.*set it to null"):
        embed_systems(SYSTEMS, MOLECULES, tmp_path / "out.h5", "3d", settings, tmp_path / "g")
    assert not (tmp_path / "g").exists()  # refused before any geometry was built


def test_settings_reject_unknown_keys_and_variants():
    with pytest.raises(ConfigError, match="unknown key"):
        EmbedSettings.from_config({"unimol_weights": "x"})
    with pytest.raises(ConfigError, match="variant"):
        EmbedSettings.from_config({"variant": "2d"})
    assert EmbedSettings.from_config(None) == SETTINGS


# ---- the rules ----------------------------------------------------------------------------------------------------
@pytest.mark.workflow
def test_embed_rules_run_in_a_temporary_workdir(tmp_path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    targets = ["results/embed/mixture_3d.h5", "results/embed/mixture_smiles.h5"]
    run_snakemake(tmp_path, "--cores", "2", *targets, timeout=600)
    for target in targets:
        assert (tmp_path / target).exists()
    assert sorted(p.name for p in (tmp_path / "results/embed/geometries").glob("*.sdf")) == [
        "DMC.sdf", "EC.sdf", "EMC.sdf", "LiPF6__F6P-.sdf", "LiPF6__Li+.sdf", "VC.sdf",
    ]  # fmt: skip
    log = (tmp_path / "results/logs/embed/mixture_3d.log").read_text()
    assert "UniMol weights NOT used" in log
    assert (tmp_path / "results/benchmarks/embed/mixture_3d.tsv").exists()
    # weights configured: only the 3d embeddings are redone, the cached geometries and the smiles variant are not
    # (params and inputs carry only what each rule reads; the UniMol run itself is covered by
    # test_unimol_embeddings_from_a_local_weight_folder)
    make_unimol_weights(tmp_path / "weights", 1)
    override = tmp_path / "unimol.yaml"
    override.write_text("embed:\n  unimol_weight_dir: weights\n")
    plan = run_snakemake(tmp_path, "--cores", "1", "-n", *targets, configfiles=(TEST_CONFIG, override))
    plan_text = plan.stdout + plan.stderr
    assert "variant=3d" in plan_text and "weights/mol_pre_all_h_220816.pt" in plan_text
    assert "variant=smiles" not in plan_text and "rule embed_geometries" not in plan_text
    assert not (tmp_path / "logs").exists()
