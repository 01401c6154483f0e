"""The policy's table: every DuckDB function, view, setting and extension,
classified for the roles that are not superusers (issue 31).

DuckDB 1.5.5 with every shipped extension loaded; tests/test_allowlist.py fails
on any name DuckDB lists that is not here, so a DuckDB upgrade cannot widen
what a role may call without a reviewed change to this file. statements.py
reads it: a name DuckDB knows as its own function or view and this table
does not classify is refused to roles that are not superusers.

A rule is its class, then conditions, joined by "+":

- ``all``: every role; ``superuser``: superusers only; ``refused``: nobody.
- ``any-mention``: judged wherever the name appears, not only where it is
  called (a table function or view usable without parentheses).
- ``literal-sql``: its argument is SQL, given as one string literal, checked
  as a statement; ``literal-table``: table names as string literals, each
  checked as SELECT * FROM it; ``literal-setting``: a setting named by a
  literal, judged by SETTINGS.
- ``not-in-from``: an aggregate in a select list, but in FROM a table macro
  over query_table(): superusers only there.
- ``memory-output``: never with a file output (for superusers too: DuckDB
  aborts at close after a refused write).

Settings: ``all`` may be read (current_setting(), SHOW) by every role;
``superuser``: only superusers (paths of the server, credentials). Nobody but
superusers sets any. Extensions: ``all``: a non-superuser's engine holds it
when its secrets need it (shipped.role_extensions); ``superuser``: superusers'
engines only; ``refused``: never loaded (not shipped).
"""

ALL, SUPERUSER, REFUSED = "all", "superuser", "refused"

_FUNCTIONS = {
    "all": """
        !__postfix !~~ !~~* % & && * ** + - ->> / // <-> << <<= <=> <@ >> >>= @ @>
        DuckDB_PROJ_Compiled_Version DuckDB_Proj_Version ST_Affine ST_Area ST_Area_Spheroid ST_AsGeoJSON
        ST_AsHEXWKB ST_AsMVT ST_AsMVTGeom ST_AsSVG ST_Azimuth ST_Boundary ST_Buffer ST_BuildArea ST_Centroid
        ST_ClosestPoint ST_Collect ST_CollectionExtract ST_ConcaveHull ST_Contains ST_ContainsProperly
        ST_ConvexHull ST_CoverageClean ST_CoverageInvalidEdges ST_CoverageInvalidEdges_Agg
        ST_CoverageSimplify ST_CoverageSimplify_Agg ST_CoverageUnion ST_CoverageUnion_Agg ST_CoveredBy
        ST_Covers ST_Crosses ST_DWithin ST_DWithin_GEOS ST_DWithin_Spheroid ST_Difference ST_Dimension
        ST_Disjoint ST_Distance ST_Distance_GEOS ST_Distance_Sphere ST_Distance_Spheroid ST_Drivers ST_Dump
        ST_EndPoint ST_Envelope ST_Envelope_Agg ST_Equals ST_Expand ST_Extent ST_Extent_Agg ST_Extent_Approx
        ST_ExteriorRing ST_FlipCoordinates ST_Force2D ST_Force3DM ST_Force3DZ ST_Force4D ST_GeneratePoints
        ST_GeomFromGeoJSON ST_GeomFromHEXEWKB ST_GeomFromHEXWKB ST_GeomFromText ST_GeometryType ST_HasM
        ST_HasZ ST_Hilbert ST_InteriorRingN ST_InterpolatePoint ST_Intersection ST_Intersection_Agg
        ST_Intersects ST_IsClosed ST_IsEmpty ST_IsRing ST_IsSimple ST_IsValid ST_Length ST_Length_Spheroid
        ST_LineInterpolatePoint ST_LineInterpolatePoints ST_LineLocatePoint ST_LineMerge
        ST_LineString2DFromWKB ST_LineSubstring ST_LocateAlong ST_LocateBetween ST_M ST_MMax ST_MMin
        ST_MakeBox2D ST_MakeEnvelope ST_MakeLine ST_MakePoint ST_MakePolygon ST_MakeValid
        ST_MaximumInscribedCircle ST_MemUnion_Agg ST_MinimumRotatedRectangle ST_Multi ST_NGeometries
        ST_NInteriorRings ST_NPoints ST_Node ST_Normalize ST_NumGeometries ST_NumInteriorRings ST_NumPoints
        ST_Overlaps ST_Perimeter ST_Perimeter_Spheroid ST_Point ST_Point2D ST_Point2DFromWKB ST_Point3D
        ST_Point4D ST_PointN ST_PointOnSurface ST_Points ST_Polygon2DFromWKB ST_Polygonize ST_QuadKey
        ST_Read ST_ReadOSM ST_ReadSHP ST_Read_Meta ST_ReducePrecision ST_RemoveRepeatedPoints ST_Reverse
        ST_Rotate ST_RotateX ST_RotateY ST_RotateZ ST_Scale ST_ShortestLine ST_Simplify
        ST_SimplifyPreserveTopology ST_Snap ST_StartPoint ST_SymDifference ST_TileEnvelope ST_Touches
        ST_TransScale ST_Transform ST_Translate ST_Union ST_Union_Agg ST_VoronoiDiagram ST_Within
        ST_WithinProperly ST_X ST_XMax ST_XMin ST_Y ST_YMax ST_YMin ST_Z ST_ZMFlag ST_ZMax ST_ZMin ^ ^@
        __internal_compress_integral_ubigint __internal_compress_integral_uinteger
        __internal_compress_integral_usmallint __internal_compress_integral_utinyint
        __internal_compress_string_hugeint __internal_compress_string_ubigint
        __internal_compress_string_uhugeint __internal_compress_string_uinteger
        __internal_compress_string_usmallint __internal_compress_string_utinyint
        __internal_decompress_integral_bigint __internal_decompress_integral_hugeint
        __internal_decompress_integral_integer __internal_decompress_integral_smallint
        __internal_decompress_integral_ubigint __internal_decompress_integral_uhugeint
        __internal_decompress_integral_uinteger __internal_decompress_integral_usmallint
        __internal_decompress_string __lance_cleanup_old_versions __lance_compact_files __lance_exec
        __lance_namespace_scan __lance_optimize_index __lance_scan __lance_set_auto_cleanup
        __lance_show_auto_cleanup __lance_truncate_table abs acos acosh add age aggregate ago alias
        any_value apply approx_count_distinct approx_quantile approx_top_k arbitrary arg_max arg_max_null
        arg_max_nulls_last arg_min arg_min_null arg_min_nulls_last argmax argmin array_agg array_aggr
        array_aggregate array_append array_apply array_cat array_concat array_contains array_cosine_distance
        array_cosine_similarity array_cross_product array_distance array_distinct array_dot_product
        array_extract array_filter array_grade_up array_has array_has_all array_has_any array_indexof
        array_inner_product array_intersect array_length array_negative_dot_product
        array_negative_inner_product array_pop_back array_pop_front array_position array_prepend
        array_push_back array_push_front array_reduce array_resize array_reverse array_reverse_sort
        array_select array_slice array_sort array_to_json array_to_string array_to_string_comma_default
        array_transform array_unique array_value array_where array_zip ascii asin asinh atan atan2 atanh avg
        bar base64 bin bit_and bit_count bit_length bit_or bit_position bit_xor bitstring bitstring_agg
        bool_and bool_or broadcast can_cast_implicitly cardinality cast_to_type cbrt ceil ceiling century
        char_length character_length chr col_description combine concat concat_ws constant_or_null contains
        copy_dir corr cos cosh cot count count_if count_star countif covar_pop covar_samp create_sort_key
        cume_dist current_catalog current_connection_id current_database current_date current_localtime
        current_localtimestamp current_query current_query_id current_role current_schema current_schemas
        current_transaction_id current_user currval damerau_levenshtein date_add date_diff date_part
        date_sub date_trunc datediff datepart datesub datetrunc day dayname dayofmonth dayofweek dayofyear
        days_in_month dbgen decade decode degrees delta_domain_metadata delta_filter_pushdown_log
        delta_filter_pushdown_log_tpcds delta_get_transaction_version delta_list_files delta_scan
        delta_set_transaction_version dense_rank divide dsdgen duckdb_approx_database_count duckdb_columns
        duckdb_connection_count duckdb_constraints duckdb_coordinate_systems duckdb_databases
        duckdb_dependencies duckdb_extensions duckdb_functions duckdb_indexes duckdb_keywords duckdb_memory
        duckdb_optimizers duckdb_prepared_statements duckdb_schemas duckdb_secret_types duckdb_sequences
        duckdb_table_sample duckdb_tables duckdb_types duckdb_variables duckdb_views ducklake_add_data_files
        ducklake_cleanup_old_files ducklake_commit ducklake_current_snapshot ducklake_delete_orphaned_files
        ducklake_expire_snapshots ducklake_flush_inlined_data ducklake_last_committed_snapshot
        ducklake_list_files ducklake_merge_adjacent_files ducklake_options ducklake_rewrite_data_files
        ducklake_scan ducklake_set_commit_message ducklake_set_option ducklake_settings ducklake_snapshots
        ducklake_table_changes ducklake_table_deletions ducklake_table_info ducklake_table_insertions
        editdist3 element_at encode ends_with entropy enum_code enum_first enum_last enum_range
        enum_range_boundary epoch epoch_ms epoch_ns epoch_us equi_width_bins era error even excel_text exp
        factorial family favg fdiv fill filter finalize first first_value flatten floor fmod format
        formatReadableDecimalSize formatReadableSize format_bytes format_pg_type format_type from_base64
        from_binary from_hex from_json from_json_strict fsum gamma gcd gen_random_uuid generate_series
        generate_subscripts geomean geometric_mean get_bit get_block_size get_current_time
        get_current_timestamp get_delta_test_expression get_type getvariable glob grade_up greatest
        greatest_common_divisor group_concat hamming has_any_column_privilege has_column_privilege
        has_database_privilege has_foreign_data_wrapper_privilege has_function_privilege
        has_language_privilege has_schema_privilege has_sequence_privilege has_server_privilege
        has_table_privilege has_tablespace_privilege hash hex histogram_exact hnsw_index_scan host hour
        html_escape html_unescape iceberg_bucket iceberg_column_stats iceberg_load_table_response
        iceberg_metadata iceberg_partition_stats iceberg_scan iceberg_schema_properties iceberg_snapshots
        iceberg_table_properties iceberg_to_ducklake iceberg_truncate iceberg_verify_equality_deletes
        icu_calendar_names icu_collate_af icu_collate_am icu_collate_ar icu_collate_ar_sa icu_collate_as
        icu_collate_az icu_collate_be icu_collate_bg icu_collate_bn icu_collate_bo icu_collate_br
        icu_collate_bs icu_collate_ca icu_collate_ceb icu_collate_chr icu_collate_cs icu_collate_cy
        icu_collate_da icu_collate_de icu_collate_de_at icu_collate_dsb icu_collate_dz icu_collate_ee
        icu_collate_el icu_collate_en icu_collate_en_us icu_collate_eo icu_collate_es icu_collate_et
        icu_collate_fa icu_collate_fa_af icu_collate_ff icu_collate_fi icu_collate_fil icu_collate_fo
        icu_collate_fr icu_collate_fr_ca icu_collate_fy icu_collate_ga icu_collate_gl icu_collate_gu
        icu_collate_ha icu_collate_haw icu_collate_he icu_collate_he_il icu_collate_hi icu_collate_hr
        icu_collate_hsb icu_collate_hu icu_collate_hy icu_collate_id icu_collate_id_id icu_collate_ig
        icu_collate_is icu_collate_it icu_collate_ja icu_collate_ka icu_collate_kk icu_collate_kl
        icu_collate_km icu_collate_kn icu_collate_ko icu_collate_kok icu_collate_ku icu_collate_ky
        icu_collate_lb icu_collate_lij icu_collate_lkt icu_collate_ln icu_collate_lo icu_collate_lt
        icu_collate_lv icu_collate_mk icu_collate_ml icu_collate_mn icu_collate_mr icu_collate_ms
        icu_collate_mt icu_collate_my icu_collate_nb icu_collate_nb_no icu_collate_ne icu_collate_nl
        icu_collate_nn icu_collate_noaccent icu_collate_nso icu_collate_om icu_collate_or icu_collate_pa
        icu_collate_pa_in icu_collate_pl icu_collate_ps icu_collate_pt icu_collate_ro icu_collate_ru
        icu_collate_sa icu_collate_se icu_collate_si icu_collate_sk icu_collate_sl icu_collate_smn
        icu_collate_sq icu_collate_sr icu_collate_sr_ba icu_collate_sr_me icu_collate_sr_rs icu_collate_st
        icu_collate_sv icu_collate_sw icu_collate_ta icu_collate_te icu_collate_th icu_collate_tk
        icu_collate_tn icu_collate_to icu_collate_tr icu_collate_ug icu_collate_uk icu_collate_ur
        icu_collate_uz icu_collate_vi icu_collate_wae icu_collate_wo icu_collate_xh icu_collate_yi
        icu_collate_yo icu_collate_yue icu_collate_yue_cn icu_collate_zh icu_collate_zh_cn icu_collate_zh_hk
        icu_collate_zh_mo icu_collate_zh_sg icu_collate_zh_tw icu_collate_zu icu_sort_key ilike_escape
        in_search_path inet_client_addr inet_client_port inet_server_addr inet_server_port instr
        is_histogram_other_bin isfinite isinf isnan isodow isoyear jaccard jaro_similarity
        jaro_winkler_similarity json json_array json_array_length json_contains json_deserialize_sql
        json_each json_exists json_extract json_extract_path json_extract_path_text json_extract_string
        json_group_array json_group_object json_group_structure json_keys json_merge_patch json_object
        json_pretty json_quote json_serialize_sql json_structure json_transform json_transform_strict
        json_tree json_type json_valid json_value julian kahan_sum kurtosis kurtosis_pop lag lance_fts
        lance_hybrid_search lance_vector_search last last_day last_value lcase lcm lead least
        least_common_multiple left left_grapheme len length length_grapheme levenshtein lgamma like_escape
        list list_aggr list_aggregate list_any_value list_append list_apply list_approx_count_distinct
        list_avg list_bit_and list_bit_or list_bit_xor list_bool_and list_bool_or list_cat list_concat
        list_contains list_cosine_distance list_cosine_similarity list_count list_distance list_distinct
        list_dot_product list_element list_entropy list_extract list_filter list_first list_grade_up
        list_has list_has_all list_has_any list_histogram list_indexof list_inner_product list_intersect
        list_kurtosis list_kurtosis_pop list_last list_mad list_max list_median list_min list_mode
        list_negative_dot_product list_negative_inner_product list_pack list_position list_prepend
        list_product list_reduce list_resize list_reverse list_reverse_sort list_select list_sem
        list_skewness list_slice list_sort list_stddev_pop list_stddev_samp list_string_agg list_sum
        list_transform list_unique list_value list_var_pop list_var_samp list_where list_zip listagg ln log
        log10 log2 lower lpad ltrim mad make_date make_time make_timestamp make_timestamp_ms
        make_timestamp_ns make_timestamptz make_type map map_concat map_contains map_contains_entry
        map_contains_value map_entries map_extract map_extract_value map_from_entries map_keys map_to_pg_oid
        map_values max max_by md5 md5_number md5_number_lower md5_number_upper mean median microsecond
        millennium millisecond min min_by minute mismatches mod mode month monthname multiply murmur3_32
        nanosecond netmask network nextafter nextval nfc_normalize normalized_interval not_ilike_escape
        not_like_escape now nth_value ntile nullif obj_description octet_length ord parquet_bloom_probe
        parquet_file_metadata parquet_full_metadata parquet_kv_metadata parquet_metadata parquet_scan
        parquet_schema parse_delta_filter_logline parse_dirname parse_dirpath parse_duckdb_log_message
        parse_filename parse_formatted_bytes parse_path percent_rank pg_collation_is_visible
        pg_conf_load_time pg_conversion_is_visible pg_function_is_visible pg_get_constraintdef pg_get_expr
        pg_get_viewdef pg_has_role pg_is_other_temp_schema pg_my_temp_schema pg_opclass_is_visible
        pg_operator_is_visible pg_opfamily_is_visible pg_postmaster_start_time pg_size_pretty pg_sleep
        pg_table_is_visible pg_timezone_names pg_ts_config_is_visible pg_ts_dict_is_visible
        pg_ts_parser_is_visible pg_ts_template_is_visible pg_type_is_visible pg_typeof pi position
        postgres_hstore_get postgres_hstore_to_json pow power pragma_collations pragma_database_size
        pragma_hnsw_index_info pragma_metadata_info pragma_platform pragma_rtree_index_info pragma_show
        pragma_storage_info pragma_table_info pragma_user_agent pragma_version prefix printf product
        quack_active_connections quack_check_token quack_clear_cache quack_identify quack_nop_authorization
        quack_query quack_query_by_name quack_serve quack_server_list quack_stop quack_uri_parser quantile
        quantile_cont quantile_disc quarter radians random range rank rank_dense read_avro read_blob
        read_csv read_csv_auto read_json read_json_auto read_json_objects read_json_objects_auto read_ndjson
        read_ndjson_auto read_ndjson_objects read_parquet read_text read_vortex read_xlsx reduce
        regexp_escape regexp_extract regexp_extract_all regexp_full_match regexp_matches regexp_replace
        regexp_split_to_array regexp_split_to_table regr_avgx regr_avgy regr_count regr_intercept regr_r2
        regr_slope regr_sxx regr_sxy regr_syy remap_struct remove_iceberg_schema_properties
        remove_iceberg_table_properties repeat repeat_row replace replace_type reservoir_quantile reverse
        right right_grapheme round round_even roundbankers row row_number row_to_json rpad rtree_index_dump
        rtree_index_scan rtrim second sem seq_scan session_user set_bit set_iceberg_schema_properties
        set_iceberg_table_properties setseed sha1 sha256 shapefile_meta shobj_description sign signbit sin
        sinh skewness sleep_ms sniff_csv split split_part sqlite_attach sqlite_query sqlite_scan sqrt
        st_asbinary st_astext st_aswkb st_aswkt st_crs st_geomfromwkb st_intersects_extent st_setcrs
        starts_with stats stddev stddev_pop stddev_samp stem str_split str_split_regex strftime string_agg
        string_split string_split_regex string_to_array strip_accents strlen strpos strptime struct_concat
        struct_contains struct_extract struct_extract_at struct_has struct_indexof struct_insert struct_keys
        struct_pack struct_position struct_update struct_values substr substring substring_grapheme subtract
        suffix sum sum_no_overflow sumkahan summary switch tan tanh test_all_types test_vector_types text
        time_bucket timetz_byte_comparable timezone timezone_hour timezone_minute to_base to_base64
        to_binary to_centuries to_days to_decades to_hex to_hours to_json to_microseconds to_millennia
        to_milliseconds to_minutes to_months to_quarters to_seconds to_timestamp to_weeks to_years today
        tpcds_answers tpcds_queries tpch_answers tpch_queries transaction_timestamp translate trim trunc
        try_strptime txid_current typeof ucase unbin unhex unicode union_extract union_tag union_value
        unity_catalog_checkpoint_table unity_catalog_force_checkpoint_table unnest unpivot_list upper
        url_decode url_encode user uuid uuid_extract_timestamp uuid_extract_version uuidv4 uuidv7 var_pop
        var_samp variance variant_bytes_to_variant variant_extract variant_normalize
        variant_to_parquet_variant variant_typeof vector_type version vortex_scan vss_join vss_match wavg
        week weekday weekofyear weighted_avg which_secret whoami write_blob write_log xor year yearweek | ||
        ~ ~~ ~~* ~~~
    """,
    "all+literal-setting": """
        current_setting
    """,
    "all+literal-sql": """
        json_serialize_plan query
    """,
    "all+literal-table": """
        query_table
    """,
    "all+not-in-from": """
        histogram
    """,
    "refused": """
        arrow_scan arrow_scan_dumb json_execute_serialized_sql pandas_scan python_map_function
    """,
    "superuser": """
        add_parquet_key all_profiling_output checkpoint collations copy_database create_fts_index
        database_list database_size disable_checkpoint_on_shutdown disable_object_cache disable_optimizer
        disable_print_progress_bar disable_profile disable_progress_bar disable_verification
        disable_verify_external disable_verify_fetch_row disable_verify_parallelism
        disable_verify_serializer drop_fts_index enable_checkpoint_on_shutdown enable_object_cache
        enable_optimizer enable_print_progress_bar enable_profile enable_progress_bar enable_verification
        extension_versions functions hnsw_compact_index import_database metadata_info platform show
        show_databases show_tables show_tables_expanded storage_info table_info tpcds tpch user_agent
        verify_external verify_fetch_row verify_parallelism verify_serializer
    """,
    "superuser+any-mention": """
        disable_logging disable_profiling duckdb_external_file_cache duckdb_log_contexts duckdb_logs
        duckdb_logs_parsed duckdb_profiling_settings duckdb_secrets duckdb_settings duckdb_temporary_files
        force_checkpoint histogram_values load_aws_credentials mysql_clear_cache mysql_debug_execution_plan
        mysql_execute mysql_explain_federated mysql_query pg_clear_cache pg_settings postgres_attach
        postgres_configure_pool postgres_execute postgres_query postgres_scan postgres_scan_pushdown
        read_duckdb read_postgres_binary truncate_duckdb_logs
    """,
    "superuser+any-mention+memory-output": """
        enable_logging enable_profiling
    """,
}

_VIEWS = {
    "all": """
        character_sets check_constraints columns constraint_column_usage constraint_table_usage
        duckdb_columns duckdb_constraints duckdb_databases duckdb_indexes duckdb_schemas duckdb_tables
        duckdb_types duckdb_views key_column_usage pg_am pg_attrdef pg_attribute pg_class pg_collation
        pg_constraint pg_database pg_depend pg_description pg_enum pg_index pg_indexes pg_namespace
        pg_prepared_statements pg_proc pg_sequence pg_sequences pg_tables pg_tablespace pg_type pg_views
        pragma_database_list referential_constraints schemata sqlite_master sqlite_schema sqlite_temp_master
        sqlite_temp_schema table_constraints tables views
    """,
    "superuser+any-mention": """
        duckdb_logs pg_settings
    """,
}

_SETTINGS = {
    "all": """
        Calendar TimeZone __delta_only_variant_encoding_enabled access_mode allocator_background_threads
        allocator_bulk_deallocation_flush_threshold allocator_flush_threshold allow_community_extensions
        allow_extensions_metadata_mismatch allow_parser_override_extension allow_unsigned_extensions
        allowed_configs arrow_large_buffer_size arrow_lossless_conversion asof_loop_join_threshold
        auto_checkpoint_skip_wal_threshold auto_fallback_to_full_download autoinstall_known_extensions
        autoload_known_extensions azure_account_name azure_context_caching azure_endpoint azure_http_logging
        azure_http_logging_redact_headers azure_http_logging_redact_query_params azure_http_proxy
        azure_http_stats azure_read_buffer_size azure_read_transfer_chunk_size
        azure_read_transfer_concurrency azure_storage_connection_string azure_transport_option_type
        azure_write_block_size azure_write_staged_blocks_per_commit binary_as_string block_allocator_memory
        catalog_error_max_schemas checkpoint_threshold current_transaction_invalidation_policy
        custom_profiling_settings custom_user_agent debug_asof_iejoin debug_checkpoint_abort
        debug_checkpoint_sleep_ms debug_eviction_queue_sleep_micro_seconds debug_force_external
        debug_force_no_cross_product debug_physical_table_scan_execution_strategy
        debug_skip_checkpoint_on_commit debug_verify_blocks debug_verify_vector debug_window_mode
        default_block_size default_collation default_null_order default_order delta_kernel_logging
        delta_scan_explain_files_filtered deprecated_using_key_syntax disable_database_invalidation
        disable_parquet_prefetching disable_timestamptz_casts disabled_compression_methods
        disabled_filesystems disabled_log_types disabled_optimizers duckdb_api
        ducklake_default_data_inlining_row_limit ducklake_max_retry_count ducklake_retry_backoff
        ducklake_retry_wait_ms ducklake_target_file_size ducklake_write_deletion_vectors
        dynamic_or_filter_threshold enable_caching_operators enable_curl_server_cert_verification
        enable_external_access enable_external_file_cache enable_fsst_vectors enable_geoparquet_conversion
        enable_global_s3_configuration enable_http_logging enable_http_metadata_cache enable_logging
        enable_macro_dependencies enable_object_cache enable_profiling enable_progress_bar
        enable_progress_bar_print enable_server_cert_verification enable_view_dependencies enabled_log_types
        errors_as_json experimental_metadata_reuse external_threads force_bitpacking_mode
        force_column_metadata_reuse force_compression force_download force_download_threshold
        force_mbedtls_unsafe force_variant_shredding geometry_always_xy geometry_minimum_shredding_size
        hf_max_per_page hnsw_ef_search hnsw_enable_experimental_persistence http_keep_alive http_proxy
        http_retries http_retry_backoff http_retry_wait_ms http_timeout httpfs_client_implementation
        httpfs_connection_caching iceberg_logging_post_body_truncate_limit iceberg_use_metadata_log
        iceberg_via_aws_sdk_for_catalog_interactions ieee_floating_point_ops
        ignore_row_group_size_for_partitioned_tables ignore_target_file_size_for_partitioned_tables
        ignore_unknown_crs immediate_transaction_mode index_scan_max_count index_scan_percentage
        integer_division lambda_syntax lance_deferred_materialization late_materialization_max_rows
        lock_configuration logging_level logging_mode logging_storage max_expression_depth max_memory
        max_vacuum_tasks memory_limit merge_join_threshold mysql_adaptive_replan_enabled
        mysql_aggregate_pushdown_enabled mysql_allow_results_streaming mysql_bit1_as_boolean
        mysql_compression_aware_costs mysql_compression_ratio mysql_debug_show_queries
        mysql_enable_predicate_analyzer mysql_enable_transactions mysql_experimental_filter_pushdown
        mysql_explain_validation_enabled mysql_hint_injection_enabled mysql_hint_staleness_threshold
        mysql_incomplete_dates_as_nulls mysql_order_pushdown_enabled mysql_pool_acquire_mode
        mysql_pool_connection_idle_timeout_millis mysql_pool_connection_max_lifetime_millis
        mysql_pool_enable_reaper_thread mysql_pool_enable_thread_local_cache mysql_pool_size
        mysql_pool_wait_timeout_millis mysql_push_threshold_no_index mysql_push_threshold_with_index
        mysql_query_timeout_enabled mysql_query_timeout_max_ms mysql_query_timeout_min_ms
        mysql_sql_buffer_result mysql_time_as_time mysql_tinyint1_as_boolean nested_loop_join_threshold
        null_order old_implicit_casting order_by_non_integer_literal ordered_aggregate_threshold
        pandas_analyze_sample parquet_metadata_cache partitioned_write_flush_threshold
        partitioned_write_max_open_files perfect_ht_threshold pg_array_as_varchar pg_connection_cache
        pg_connection_limit pg_debug_show_queries pg_experimental_filter_pushdown
        pg_idle_in_transaction_timeout_millis pg_null_byte_replacement pg_pages_per_task
        pg_pool_acquire_mode pg_pool_enable_reaper_thread pg_pool_enable_thread_local_cache
        pg_pool_health_check_query pg_pool_idle_timeout_millis pg_pool_max_connections
        pg_pool_max_lifetime_millis pg_pool_wait_timeout_millis pg_staleness_query
        pg_staleness_query_enabled pg_statement_timeout_millis pg_use_binary_copy pg_use_ctid_scan
        pg_use_information_schema_introspection pg_use_text_protocol pin_threads pivot_filter_threshold
        pivot_limit prefer_range_joins prefetch_all_parquet_files preserve_identifier_case
        preserve_insertion_order produce_arrow_string_view profiling_coverage profiling_mode
        progress_bar_time python_enable_replacements python_scan_all_frames quack_fetch_batch_chunks
        quack_loaded_at_us rtree_index_scan_min_rows rtree_index_scan_ratio s3_allow_recursive_globbing
        s3_endpoint s3_region s3_requester_pays s3_uploader_max_filesize s3_uploader_thread_limit
        s3_url_compatibility_mode s3_url_style s3_use_ssl s3_version_id_pinning
        scalar_subquery_error_on_multiple_rows scheduler_process_partial schema sqlite_all_varchar
        sqlite_debug_show_queries sqlite_disable_multithreaded_scans storage_block_prefetch
        storage_compatibility_version streaming_buffer_size temp_file_encryption threads
        unsafe_disable_etag_checks unsafe_enable_version_guessing unsafe_iceberg_ignore_sort_order user
        username vacuum_rebuild_indexes validate_external_file_cache variant_minimum_shredding_size
        wal_autocheckpoint wal_autocheckpoint_entries warnings_as_errors whoami_hostname whoami_meta
        whoami_name whoami_provider whoami_region whoami_started_at worker_threads
        write_buffer_row_group_count write_buffer_row_group_memory_limit zstd_min_string_length
    """,
    "superuser": """
        allow_asterisks_in_http_paths allow_persistent_secrets allow_unredacted_secrets allowed_directories
        allowed_paths arrow_output_list_view arrow_output_version autoinstall_extension_repository
        azure_credential_chain azure_proxy_password azure_proxy_user_name ca_cert_file
        custom_extension_repository default_secret_storage explain_output extension_directories
        extension_directory file_search_path home_directory http_logging_output http_proxy_password
        http_proxy_username httpfs_enable_credential_refresh iceberg_test_force_token_expiry log_query_path
        max_temp_directory_size merge_http_secret_into_s3_request mysql_session_time_zone password
        pg_oauth_token profile_output profiling_output quack_authentication_function
        quack_authorization_function s3_access_key_id s3_kms_key_id s3_secret_access_key s3_session_token
        s3_uploader_max_parts_per_file search_path secret_directory temp_directory
    """,
}

_EXTENSIONS = {
    # built into DuckDB (every engine has them), and those a role's secrets need
    "all": """
        aws azure core_functions httpfs icu json parquet
    """,
    # not shipped: they download code or need what this server does not have
    "refused": """
        autocomplete motherduck odbc_scanner ui
    """,
    "superuser": """
        avro delta ducklake encodings excel fts iceberg inet lance mysql_scanner postgres_scanner quack spatial
        sqlite_scanner tpcds tpch unity_catalog vortex vss
    """,
}


def _table(groups):
    return {name: rule for rule, names in groups.items() for name in names.split()}


FUNCTIONS = _table(_FUNCTIONS)
VIEWS = _table(_VIEWS)
SETTINGS = _table(_SETTINGS)
EXTENSIONS = _table(_EXTENSIONS)


def parts(rule):
    """(class, set of conditions) of a rule."""
    base, *tags = rule.split("+")
    return base, frozenset(tags)
