def test_fixtures(data_dir, debug_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(debug_model_dir)
    model = AutoModelForCausalLM.from_pretrained(debug_model_dir)
    assert tok.bos_token_id == 1 and model.config.vocab_size == len(tok)
